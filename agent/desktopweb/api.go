package desktopweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
)

// The page's HTTP API (docs/desktop-api.md).

// getState answers GET /api/state: the snapshot.
func (s *Server) getState(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.state.json())
}

// events answers GET /api/events: server-sent events, a "state" event with
// the whole snapshot at once and after each change.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Connection", "keep-alive")
	snaps, stop := s.state.follow()
	defer stop()
	keepAlive := time.NewTicker(30 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-snaps:
			if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b); err != nil {
				return
			}
		case <-keepAlive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
		flusher.Flush()
	}
}

// install answers POST /api/jobs/{id}/install: the desktop face runs the
// job (it decides, waits for the lock, runs) until ctx ends; the page
// follows it through state events. 202 with the run; 409 when it runs
// already.
func (s *Server) install(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := events.ValidID("job id", id); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	run, err := s.state.startRun(id)
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	path := s.cfg.Face.OutputPath(id)
	var offset int64
	if fi, err := os.Stat(path); err == nil {
		offset = fi.Size() // the output of this run is what comes after
	}
	done := make(chan struct{})
	go func() {
		st, err := s.cfg.Face.Run(ctx, id)
		close(done)
		if err != nil {
			s.log.Info("job from the page not run", zap.String("job", id), zap.Error(err))
		}
		s.state.runDone(id, st, err)
		if s.cfg.Ended != nil && ctx.Err() == nil {
			s.cfg.Ended(endedNotice(id, s.state.name(id), st, err))
		}
	}()
	go s.tailOutput(path, offset, id, done)
	writeJSON(w, http.StatusAccepted, run)
}

// tailEvery is how often the output of a running job is read again.
const tailEvery = 250 * time.Millisecond

// tailOutput reads the end of a running job's output file (from offset,
// where this run's output starts) as it grows, until done.
func (s *Server) tailOutput(path string, offset int64, jobID string, done <-chan struct{}) {
	t := time.NewTicker(tailEvery)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if s.state.phase(jobID) != PhaseRunning {
			continue
		}
		if tail, err := readTail(path, offset, 4096); err == nil && tail != last {
			last = tail
			s.state.runOutput(jobID, tail)
		}
	}
}

// readTail reads at most limit bytes of the end of path after offset.
func readTail(path string, offset int64, limit int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	from := max(offset, fi.Size()-limit)
	if from >= fi.Size() {
		return "", nil
	}
	b := make([]byte, fi.Size()-from)
	n, err := f.ReadAt(b, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.ToValidUTF8(string(b[:n]), "\uFFFD"), nil
}

// deferJob answers POST /api/jobs/{id}/defer: the desktop face records
// the deferral; 200 with the deferred status, 409 saying why not.
func (s *Server) deferJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := events.ValidID("job id", id); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	st, err := s.cfg.Face.Defer(r.Context(), id)
	switch {
	case errors.Is(err, agent.ErrNoDeferral), errors.Is(err, agent.ErrAlreadyDone), errors.Is(err, offers.ErrNotFound):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		writeError(w, http.StatusBadGateway, err)
		return
	}
	s.poke()
	writeJSON(w, http.StatusOK, st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": "..."} with code.
func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// endedNotice is the notice of a job (id, named name) installed from the
// page that ended with st, or could not run (err).
func endedNotice(id, name string, st events.JobStatus, err error) agent.Notice {
	switch {
	case err != nil:
		return agent.Notice{Kind: agent.NoticeFailed, JobID: id, Text: fmt.Sprintf("%s could not run: %v", name, err)}
	case st.State == events.StateSucceeded:
		return agent.Notice{Kind: agent.NoticeFinished, JobID: id, Text: name + " is installed"}
	}
	return agent.Notice{Kind: agent.NoticeFailed, JobID: id, Text: fmt.Sprintf("%s %s: %s", name, st.State, st.Reason)}
}
