// Package runner runs one job's command line on a client and reports what
// happened: its pid, exit code, whether it timed out, when it started and
// finished, and the end of its output.
//
// A [Runner] starts the command directly (argv[0] is the program, no shell)
// unless [Spec.Shell] asks for the platform shell, with stdin closed and
// stdout and stderr appended to [Spec.LogPath]. The command runs in its own
// process group (a job object on Windows) so that, when [Spec.Timeout]
// elapses or the caller's context is cancelled, the whole process tree is
// killed, children and grandchildren included.
//
// The package never decides whether a run succeeded (a non-zero exit code is
// a result, not an error), never retries, never logs, and knows nothing of
// NATS, CloudEvents, jobs' schedules or the agent's lock: it imports no other
// package of this project.
package runner
