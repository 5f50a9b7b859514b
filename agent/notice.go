package agent

import "github.com/pcm-project/pcm/events"

// NoticeKind says what a notice for the user is about.
type NoticeKind string

// The kinds of notices the desktop gives its user.
const (
	// NoticeOffered: a job the user may run was offered.
	NoticeOffered NoticeKind = "offered"
	// NoticeMandatory: a mandatory job that needs the user was offered; a
	// countdown follows.
	NoticeMandatory NoticeKind = "mandatory"
	// NoticeCountdown: a mandatory job starts soon (how soon, and how to
	// defer it).
	NoticeCountdown NoticeKind = "countdown"
	// NoticeBusy: a background job holds the client and the user's job
	// waits for it.
	NoticeBusy NoticeKind = "busy"
	// NoticeFinished: a job the desktop ran succeeded.
	NoticeFinished NoticeKind = "finished"
	// NoticeFailed: a job the desktop ran failed, or could not run.
	NoticeFailed NoticeKind = "failed"
	// NoticeRestart: the computer restarts soon to finish a job.
	NoticeRestart NoticeKind = "restart"
)

// Notice is a line for the user with what it is about.
type Notice struct {
	Kind NoticeKind `json:"kind"`
	// JobID is the job it is about.
	JobID string `json:"job_id,omitempty"`
	// Text is what the user reads, in words that fit every face (the
	// terminal, the page, a notification).
	Text string `json:"text"`
	// Hint says how to act on it from the command line ("run it with: pcm
	// desktop run JOB"); the terminal appends it (Line), the page and
	// notifications have their own buttons instead. "" for none.
	Hint string `json:"-"`
}

// Line is the notice as the terminal prints it: its text, then its hint.
func (n Notice) Line() string {
	if n.Hint == "" {
		return n.Text
	}
	return n.Text + "; " + n.Hint
}

// tell gives the user a notice: its line to DesktopConfig.Notify, the
// whole notice to DesktopConfig.OnNotice.
func (d *Desktop) tell(n Notice) {
	d.dcfg.Notify(n.Line())
	if d.dcfg.OnNotice != nil {
		d.dcfg.OnNotice(n)
	}
}

// finishedKind is the kind of the notice of a job that ended with st.
func finishedKind(st events.JobStatus) NoticeKind {
	if st.State == events.StateSucceeded {
		return NoticeFinished
	}
	return NoticeFailed
}
