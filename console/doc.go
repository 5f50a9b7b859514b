// Package console is pcm's web console: the jobs with their live progress,
// one job's rollout (a chart over time, each client's state and the reason
// in words, its output tail, and cancel, halt and resume when the console's
// credentials allow), the fleet, and the audit history with its CloudEvents
// and a JSON-lines download.
//
// A Console reads the broker with its own credentials (an auditor's, or a
// publisher's to act). It follows the streams once, whatever the number of
// viewers: one replay of PCM_JOBS and PCM_STATUS feeds the jobs list and
// the metrics, one rollout watch per job open in any browser feeds every
// viewer of that job, and server-sent events fan the results out in
// process. Its pages and scripts are embedded; nothing is fetched from
// elsewhere. It authenticates its own users (Users) and never logs
// anything but failures of its feeds.
package console
