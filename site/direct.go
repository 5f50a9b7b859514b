package site

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/streamread"
)

// DirectPoll is how often a direct relay asks the hub for new job events
// once it has caught up: hints of new offers do not cross the link.
const DirectPoll = time.Second

// NewDirectRelay returns a Relay that reads the hub (a JetStream of the
// hub's domain) with direct gets only, as an authenticated site's leaf
// credentials allow (docs/sites.md): the hub's PCM_JOBS from the event
// after the last one relayed, each offer's package by its info and chunks.
// It needs no PCM_JOBS_HUB: the position it keeps (RelaySeqHeader) is the
// sequence in the hub's PCM_JOBS.
func NewDirectRelay(local, hub jetstream.JetStream, log *zap.Logger) *Relay {
	r := NewRelay(local, hub, log)
	r.direct = true
	return r
}

// followDirect relays the hub's PCM_JOBS after the last event relayed,
// read with direct gets, until an error.
func (r *Relay) followDirect(ctx context.Context) error {
	last, err := r.lastRelayed(ctx)
	if err != nil {
		return fmt.Errorf("reading where the relay stopped: %w", err)
	}
	rd, err := streamread.NewReader(r.hub, events.StreamJobs, streamread.Options{StartSeq: last + 1})
	if err != nil {
		return err
	}
	defer rd.Close()
	for {
		m, err := rd.Next(ctx)
		if errors.Is(err, streamread.ErrCaughtUp) {
			if err := backoff.Sleep(ctx, DirectPoll); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if ref := packageOf(m.Header, m.Data); ref != nil {
			r.ensureRetrying(ctx, *ref)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err := r.pass(ctx, m.Subject, m.Data, m.Header, m.Seq); err != nil {
			return err
		}
	}
}

// The hub's object store as direct gets read it (ADR-20's layout).
const (
	objStream   = "OBJ_" + events.BucketPackages
	objMetaPre  = "$O." + events.BucketPackages + ".M."
	objChunkFmt = "$O." + events.BucketPackages + ".C.%s"
)

// ensureDirect copies the package name from the hub's store to local with
// direct gets: its info, then its chunks, checked against the digest the
// job pins.
func (r *Relay) ensureDirect(ctx context.Context, local jetstream.ObjectStore, ref events.PackageRef, name string) error {
	m, found, err := streamread.LastInBody(ctx, r.hub, objStream, objMetaPre+base64.URLEncoding.EncodeToString([]byte(name)))
	if err != nil {
		return fmt.Errorf("%w: %s's info from the hub: %w", ErrCache, name, err)
	}
	var info jetstream.ObjectInfo
	if found {
		if err := json.Unmarshal(m.Data, &info); err != nil {
			return fmt.Errorf("%w: %s's info at the hub is unreadable: %v", ErrCache, name, err)
		}
	}
	if !found || info.Deleted {
		return fmt.Errorf("%w: %s: %w", ErrCache, name, jetstream.ErrObjectNotFound)
	}
	if info.Metadata[events.PackageMetaSHA256] != ref.SHA256 {
		return fmt.Errorf("%w: %s: the hub holds digest %s, the job pins %s", ErrCache, name, info.Metadata[events.PackageMetaSHA256], ref.SHA256)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.chunks(ctx, &info, ref.SHA256, pw)) }()
	stored, err := local.Put(ctx, info.ObjectMeta, pr)
	pr.Close()
	if err != nil {
		_ = local.Delete(context.WithoutCancel(ctx), name)
		return fmt.Errorf("%w: storing %s at the site: %w", ErrCache, name, err)
	}
	r.downloads.Add(1)
	r.bytes.Add(int64(stored.Size))
	r.log.Info("package cached at the site", zap.String("package", name), zap.Uint64("bytes", stored.Size))
	return nil
}

// chunks writes the object's chunks to w, in order, and fails unless they
// make info.Size bytes whose sha256 is sha.
func (r *Relay) chunks(ctx context.Context, info *jetstream.ObjectInfo, sha string, w io.Writer) error {
	rd, err := streamread.NewReader(r.hub, objStream, streamread.Options{Filters: []string{fmt.Sprintf(objChunkFmt, info.NUID)}})
	if err != nil {
		return err
	}
	defer rd.Close()
	h := sha256.New()
	var n uint64
	for n < info.Size {
		m, err := rd.Next(ctx)
		if errors.Is(err, streamread.ErrCaughtUp) {
			return fmt.Errorf("%w: %s: the hub holds %d of its %d bytes", ErrCache, info.Name, n, info.Size)
		}
		if err != nil {
			return err
		}
		h.Write(m.Data)
		n += uint64(len(m.Data))
		if _, err := w.Write(m.Data); err != nil {
			return err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != info.Size || got != sha {
		return fmt.Errorf("%w: %s: the hub's content has sha256 %s (%d bytes), the job pins %s", ErrCache, info.Name, got, n, sha)
	}
	return nil
}
