package events

// SigningInputV1 is the legacy signing input, for the tests of Verify.
var SigningInputV1 = signingInputV1
