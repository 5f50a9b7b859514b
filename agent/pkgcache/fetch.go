package pkgcache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/archive"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/streamread"
)

// How PCM_PACKAGES is laid out. The object naming and the metadata keys are
// the wire contract's (events/packages.go); the stream and chunk subjects are
// those of the NATS object store (ADR-20): OBJ_<bucket>, $O.<bucket>.C.<nuid>.
const (
	objStream       = "OBJ_" + events.BucketPackages
	chunkSubjectFmt = "$O." + events.BucketPackages + ".C.%s"
	metaSubjectPre  = "$O." + events.BucketPackages + ".M."
	// batchBytes bounds the chunks one direct get brings.
	batchBytes = 8 << 20
)

// Fetch returns the cached content of ref, downloading it from the
// PCM_PACKAGES object store reached through js when it is not in the cache
// (or when the cached copy no longer has its digest). The content is
// verified against ref.SHA256 in both cases: a download whose bytes do not
// hash to it, or an object whose recorded digest or size differs, fails
// with ErrDigestMismatch; a package not in the store fails with ErrMissing;
// one larger than the cache with ErrTooLarge. A download that stalls or is
// cut (a broker restart) resumes at the next chunk; after Config.Retries
// attempts in a row without progress it fails with ErrDownload, and
// nothing partial is left in the cache. Concurrent fetches of one digest
// download it once.
//
// Pin ref.SHA256 before calling Fetch and until the content is unpacked,
// so that no other download evicts it meanwhile.
func (c *Cache) Fetch(ctx context.Context, js jetstream.JetStream, ref events.PackageRef) (Entry, error) {
	if err := ref.Validate(); err != nil {
		return Entry{}, err
	}
	sha := ref.SHA256
	for {
		c.mu.Lock()
		if e, ok := c.entries[sha]; ok {
			entry := e.Entry
			c.mu.Unlock()
			err := verifyFile(ctx, entry.Path, sha, entry.Size)
			if err == nil {
				c.touch(sha)
				c.mu.Lock()
				c.stats.Hits++
				c.mu.Unlock()
				return c.asFetched(ctx, js, entry, ref), nil
			}
			if ctx.Err() != nil {
				return Entry{}, fmt.Errorf("%w: %s@%s: %w", ErrDownload, ref.Name, ref.Version, ctx.Err())
			}
			c.log.Warn("cached package is damaged; downloading it again", zap.String("sha256", sha), zap.Error(err))
			c.drop(sha)
			continue
		}
		if wait, busy := c.inflight[sha]; busy {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return Entry{}, fmt.Errorf("%w: %s@%s: %w", ErrDownload, ref.Name, ref.Version, ctx.Err())
			}
		}
		done := make(chan struct{})
		c.inflight[sha] = done
		c.mu.Unlock()

		e, err := c.download(ctx, js, ref)

		c.mu.Lock()
		delete(c.inflight, sha)
		close(done)
		c.mu.Unlock()
		return e, err
	}
}

// asFetched adapts a cache hit to ref: the same content may have been
// fetched first as another package, whose file name and mode are not
// ref's. Those are read from ref's object info (metadata, not content); if
// the broker cannot say, the recorded ones stay.
func (c *Cache) asFetched(ctx context.Context, js jetstream.JetStream, e Entry, ref events.PackageRef) Entry {
	if e.Name == ref.Name && e.Version == ref.Version {
		return e
	}
	if info, err := c.lookup(ctx, js, ref); err == nil {
		if own, err := entryOf(ref, info); err == nil {
			own.Path, own.FetchedAt = e.Path, e.FetchedAt
			return own
		}
	}
	e.Name, e.Version = ref.Name, ref.Version
	return e
}

// verifyFile checks the size and the sha256 of a cached file.
func verifyFile(ctx context.Context, path, sha string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx: ctx, r: f})
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%d bytes, want %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("sha256 %s, want %s", got, sha)
	}
	return nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}

// transfer is the state of one download across its resumptions.
type transfer struct {
	file     *os.File
	h        hash.Hash
	n        int64  // bytes written
	seq      uint64 // stream sequence of the last chunk written
	received int64  // bytes received, restarts included
}

// reset starts the transfer over (the object was replaced meanwhile).
func (t *transfer) reset() error {
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := t.file.Truncate(0); err != nil {
		return err
	}
	t.h.Reset()
	t.n, t.seq = 0, 0
	return nil
}

// lengthError: the chunks of an object do not add up to its recorded size.
type lengthError struct{ got, want int64 }

func (e *lengthError) Error() string {
	if e.got > e.want {
		return fmt.Sprintf("the stored chunks hold more than the %d bytes the object records", e.want)
	}
	return fmt.Sprintf("the stored chunks end after %d of the %d bytes the object records", e.got, e.want)
}

// errWrite marks a local write error (disk full, ...): not resumed.
var errWrite = errors.New("writing the download")

// download fetches ref into the cache.
func (c *Cache) download(ctx context.Context, js jetstream.JetStream, ref events.PackageRef) (Entry, error) {
	spec := events.PackageObjectName(ref.Name, ref.Version)
	info, err := c.lookup(ctx, js, ref)
	if err != nil {
		return Entry{}, err
	}
	e, err := entryOf(ref, info)
	if err != nil {
		return Entry{}, err
	}
	if err := c.reserve(e); err != nil {
		return Entry{}, err
	}
	defer c.unreserve(e.Size)
	f, err := os.CreateTemp(c.cfg.Dir, tmpPrefix+ref.SHA256[:16]+"-*")
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %s: creating a file in the cache: %w", ErrDownload, spec, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	t := &transfer{file: f, h: sha256.New()}
	defer func() {
		c.mu.Lock()
		c.stats.DownloadedBytes += t.received
		c.mu.Unlock()
	}()
	start := time.Now()
	c.log.Info("downloading a package", zap.String("package", spec), zap.String("sha256", ref.SHA256), zap.Int64("size", e.Size))
	for idle := 0; ; {
		before := t.n
		err := c.transferOnce(ctx, js, info, e, t)
		if err == nil {
			break
		}
		var le *lengthError
		switch {
		case ctx.Err() != nil:
			return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, ctx.Err())
		case errors.Is(err, errWrite):
			return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, err)
		case errors.As(err, &le):
			// Replaced while downloading (a forced push of the same
			// content), or altered in place.
			cur, gerr := c.lookup(ctx, js, ref)
			if gerr != nil || cur.NUID == info.NUID {
				return Entry{}, fmt.Errorf("%w: %s: %w", ErrDigestMismatch, spec, err)
			}
			if _, err := entryOf(ref, cur); err != nil {
				return Entry{}, err
			}
			if err := t.reset(); err != nil {
				return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, err)
			}
			info, idle = cur, 0
			c.countResume()
			c.log.Info("package replaced by the same content while downloading; starting over", zap.String("package", spec))
			continue
		}
		if t.n > before {
			idle = 0
		} else {
			idle++
		}
		if idle > c.cfg.Retries {
			return Entry{}, fmt.Errorf("%w: %s: %d attempts in a row received nothing (%d of %d bytes so far): %w",
				ErrDownload, spec, idle, t.n, e.Size, err)
		}
		c.countResume()
		d := resumeDelays.Nth(idle)
		c.log.Warn("package download interrupted; resuming", zap.String("package", spec),
			zap.Int64("received", t.n), zap.Int64("size", e.Size), zap.Duration("retry_in", d), zap.Error(err))
		if err := backoff.Sleep(ctx, d); err != nil {
			return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, err)
		}
	}
	if got := hex.EncodeToString(t.h.Sum(nil)); t.n != e.Size || got != ref.SHA256 {
		return Entry{}, fmt.Errorf("%w: %s: the downloaded content (%d bytes) has sha256 %s, the job pins %s: the package was altered after the job was published",
			ErrDigestMismatch, spec, t.n, got, ref.SHA256)
	}
	if err := f.Sync(); err != nil {
		return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, err)
	}
	if err := f.Close(); err != nil {
		return Entry{}, fmt.Errorf("%w: %s: %w", ErrDownload, spec, err)
	}
	e.FetchedAt = time.Now().UTC()
	e, err = c.commit(f.Name(), e)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %s: storing it in the cache: %w", ErrDownload, spec, err)
	}
	committed = true
	e.Downloaded = true
	elapsed := time.Since(start)
	c.log.Info("package downloaded and verified", zap.String("package", spec), zap.String("sha256", ref.SHA256),
		zap.Int64("size", e.Size), zap.Duration("took", elapsed),
		zap.Float64("mib_per_s", float64(e.Size)/(1<<20)/max(elapsed.Seconds(), 1e-6)))
	return e, nil
}

// resumeDelays are the waits before a download resumes: 200 ms after
// progress, doubled per attempt in a row without progress, up to 5 s.
var resumeDelays = backoff.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: -1}

func (c *Cache) countResume() {
	c.mu.Lock()
	c.stats.Resumes++
	c.mu.Unlock()
}

// lookup reads the object's info: the last message on its meta subject,
// with a direct get that names it in its body (a client may read the
// object store's messages through its batched direct gets, the one import
// that serves the info and the chunks; it may not bind the store or
// create consumers on it).
func (c *Cache) lookup(ctx context.Context, js jetstream.JetStream, ref events.PackageRef) (*jetstream.ObjectInfo, error) {
	spec := events.PackageObjectName(ref.Name, ref.Version)
	lctx, cancel := context.WithTimeout(ctx, c.cfg.StallTimeout)
	defer cancel()
	m, found, err := streamread.LastInBody(lctx, js, objStream, metaSubjectPre+base64.URLEncoding.EncodeToString([]byte(spec)))
	notFound := fmt.Errorf("%w: %s is not in %s (removed, or never pushed): push its content (sha256 %s) again, or publish the job for another version",
		ErrMissing, spec, events.BucketPackages, ref.SHA256)
	switch {
	case err == nil && !found:
		return nil, notFound
	case errors.Is(err, streamread.ErrNoStream):
		return nil, fmt.Errorf("%w: %s: the broker has no %s object store", ErrMissing, spec, events.BucketPackages)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: reading its info: %w", ErrDownload, spec, err)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return nil, fmt.Errorf("%w: %s: its info in %s is unreadable: push the package again", ErrFormat, spec, events.BucketPackages)
	}
	if info.Deleted {
		return nil, notFound
	}
	info.ModTime = m.Time
	return &info, nil
}

// entryOf checks an object against the reference a job pins, before any
// byte is downloaded, and describes the content it will become.
func entryOf(ref events.PackageRef, info *jetstream.ObjectInfo) (Entry, error) {
	spec := events.PackageObjectName(ref.Name, ref.Version)
	if info.Opts != nil && info.Opts.Link != nil {
		return Entry{}, fmt.Errorf("%w: %s is an object store link, not package content: push the package again", ErrFormat, spec)
	}
	if sum, err := jetstream.DecodeObjectDigest(info.Digest); err == nil && hex.EncodeToString(sum) != ref.SHA256 {
		return Entry{}, fmt.Errorf("%w: %s was replaced or altered after the job was published: %s holds content with sha256 %s, the job pins %s",
			ErrDigestMismatch, spec, events.BucketPackages, hex.EncodeToString(sum), ref.SHA256)
	}
	if ref.Size > 0 && int64(info.Size) != ref.Size {
		return Entry{}, fmt.Errorf("%w: %s holds %d bytes, the job pins %d", ErrDigestMismatch, spec, info.Size, ref.Size)
	}
	e := Entry{Name: ref.Name, Version: ref.Version, SHA256: ref.SHA256, Size: int64(info.Size), Format: info.Metadata[events.PackageMetaFormat]}
	switch e.Format {
	case "", events.PackageFormatFile:
		e.Format = events.PackageFormatFile
		e.File = safeFileName(info.Metadata[events.PackageMetaFile], ref.Name)
		m, _ := strconv.ParseUint(info.Metadata[events.PackageMetaMode], 8, 32)
		e.Mode = archive.FileMode(fs.FileMode(m))
	case events.PackageFormatTarGz:
	default:
		return Entry{}, fmt.Errorf("%w: %s has format %q; this agent knows %s and %s: upgrade the agent", ErrFormat, spec, e.Format, events.PackageFormatFile, events.PackageFormatTarGz)
	}
	return e, nil
}

// safeFileName is name if it is a plain file name, else fallback.
func safeFileName(name, fallback string) string {
	if name == "" || name != filepath.Base(name) || !filepath.IsLocal(name) || name == "." || name == ".." || !fs.ValidPath(name) {
		return fallback
	}
	return name
}

// transferOnce reads the object's chunks after t.seq into t until the
// recorded size is reached, with batched direct gets (no consumer); it
// returns when an answer takes longer than the stall timeout, or when the
// stored chunks end short of the size.
func (c *Cache) transferOnce(ctx context.Context, js jetstream.JetStream, info *jetstream.ObjectInfo, e Entry, t *transfer) error {
	if t.n >= e.Size {
		return nil
	}
	r, err := streamread.NewReader(js, objStream, streamread.Options{
		Filters:  []string{fmt.Sprintf(chunkSubjectFmt, info.NUID)},
		StartSeq: t.seq + 1,
		MaxBytes: batchBytes,
		Timeout:  c.cfg.StallTimeout,
		RetryFor: c.cfg.StallTimeout, // the download resumes by itself (Config.Retries)
	})
	if err != nil {
		return err
	}
	defer r.Close()
	for t.n < e.Size {
		m, err := r.Next(ctx)
		if errors.Is(err, streamread.ErrCaughtUp) {
			return &lengthError{got: t.n, want: e.Size}
		}
		if err != nil {
			return fmt.Errorf("no chunk within %s: %w", c.cfg.StallTimeout, err)
		}
		data := m.Data
		t.received += int64(len(data))
		if t.n+int64(len(data)) > e.Size {
			return &lengthError{got: t.n + int64(len(data)), want: e.Size}
		}
		if _, err := t.file.Write(data); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		t.h.Write(data)
		t.n += int64(len(data))
		t.seq = m.Seq
		if c.cfg.Progress != nil {
			c.cfg.Progress(e, t.n, e.Size)
		}
	}
	return nil
}
