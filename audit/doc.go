// Package audit replays pcm's history: the offers and cancellations of
// PCM_JOBS and the statuses of PCM_STATUS, merged in the order the broker
// stored them (Replay, with a Filter by time, job, client and type, to the
// end of the history or following it), and the proof that a replay was
// whole (Verify: what each stream holds, what was read, its gaps, the
// events that do not decode).
//
// A replay is complete or fails (internal/streamread checks what it reads
// against the streams' state), holds a few batches in memory whatever the
// size of the history, and needs no consumer: an auditor's credentials
// suffice. It never writes and never logs.
package audit
