package offers

import "errors"

// ErrNotFound: no offer of the job id is in the scanned part of PCM_JOBS.
var ErrNotFound = errors.New("job not found")
