// Package testenv gives tests real pcm brokers: StartBroker runs an embedded,
// provisioned single-node broker on a random loopback port and a temporary
// store directory; StartCluster runs an n-node JetStream cluster on loopback.
// Both run what pcm broker runs besides the server (broker.StartServices:
// the provisioning, the client view), clean up through t.Cleanup, can be
// stopped and restarted on the same ports and directories, and hand out
// connections that reconnect across a restart. CheckFor polls a check that
// says what is still wrong, and fails with its last error; WaitFor polls a
// condition; neither sleeps for proof.
//
// WithAuth and WithTLS start them with authentication (a fresh operator and
// pcm account; the helper connections are the admin) and TLS (certificates
// generated for the test, NewCerts); Broker.Sec mints users of any role and
// ClientOptions connects as one. PCM_TEST_SECURE=1 turns both on for every
// broker and cluster, so that a whole suite runs secured.
//
// It is a normal package (not a _test file) so that the tests of any package
// can import it; no production package imports it. It never mocks NATS,
// never listens beyond 127.0.0.1 and never keeps anything after a test
// ends.
package testenv
