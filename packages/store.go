package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/archive"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/streamread"
)

// packageChunkSize is the size of the object store chunks of a push.
const packageChunkSize = 256 << 10

// defaultTimeout bounds a lookup, a listing or a removal whose ctx has no
// deadline.
const defaultTimeout = 30 * time.Second

// Info describes a package version stored in PCM_PACKAGES.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Size of the content in bytes (the tar.gz of a directory).
	Size int64 `json:"size"`
	// SHA256 is the hex digest of the content; empty while incomplete.
	SHA256 string `json:"sha256"`
	// Format is events.Packageevents.PackageFormatFile or events.Packageevents.PackageFormatTarGz.
	Format string `json:"format"`
	// File is the file name of a single-file package.
	File     string    `json:"file,omitempty"`
	PushedBy string    `json:"pushed_by,omitempty"`
	PushedAt time.Time `json:"pushed_at"`
	// Complete is false for a push that stored content but stopped before
	// recording its sha256: no job can use it; push it again with Force.
	Complete bool `json:"complete"`
}

// Spec is "NAME@VERSION".
func (i Info) Spec() string { return events.PackageObjectName(i.Name, i.Version) }

// Ref is the reference a job carries: name, version, the pinned sha256 and
// the size.
func (i Info) Ref() events.PackageRef {
	return events.PackageRef{Name: i.Name, Version: i.Version, SHA256: i.SHA256, Size: i.Size}
}

// PushOptions says what a pushed path becomes.
type PushOptions struct {
	// Name and Version of the package (see events.ValidPackagePart).
	// Required.
	Name, Version string
	// Force replaces an existing package of that name and version. Jobs
	// already published pin the old sha256: agents that have not cached it
	// report them failed (digest mismatch).
	Force bool
	// PushedBy is recorded as who pushed it; default "pcm".
	PushedBy string
	// Progress, when set, is called as content is sent with the bytes sent
	// so far and the total (-1 for a directory, packed as it is sent).
	Progress func(sent, total int64)
}

// Store stores, lists, removes and resolves package content in the
// PCM_PACKAGES object store.
type Store struct {
	js  jetstream.JetStream
	now func() time.Time
}

// NewStore returns the package store reached through js.
func NewStore(js jetstream.JetStream) *Store {
	return &Store{js: js, now: time.Now}
}

// bucket binds to PCM_PACKAGES.
func (p *Store) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	var obs jetstream.ObjectStore
	err := backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		obs, err = p.js.ObjectStore(ctx, events.BucketPackages)
		return err
	})
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: object store %s does not exist: run pcm broker provision", ErrNotProvisioned, events.BucketPackages)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRead, events.BucketPackages, err)
	}
	return obs, nil
}

// Push stores the file or directory at path as package opts.Name at
// opts.Version: a file as it is, a directory packed by archive.Pack. It refuses
// (ErrExists) to replace an existing version unless opts.Force. The
// content is streamed, hashed as it is sent, and the package becomes
// usable only once its sha256 and size are recorded, after the last chunk
// is stored: an interrupted push leaves an incomplete package that no job
// resolves. If ctx has no deadline, each chunk gets the jetstream default
// timeout and the push as a whole none.
func (p *Store) Push(ctx context.Context, path string, opts PushOptions) (Info, error) {
	if err := events.ValidPackagePart("name", opts.Name); err != nil {
		return Info{}, err
	}
	if err := events.ValidPackagePart("version", opts.Version); err != nil {
		return Info{}, err
	}
	if opts.PushedBy == "" {
		opts.PushedBy = "pcm"
	}
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalidContent, err)
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("%w: %s is neither a regular file nor a directory", ErrInvalidContent, path)
	}
	obs, err := p.bucket(ctx)
	if err != nil {
		return Info{}, err
	}
	spec := events.PackageObjectName(opts.Name, opts.Version)
	var existing *jetstream.ObjectInfo
	err = backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		existing, err = obs.GetInfo(ctx, spec)
		return err
	})
	switch {
	case err == nil && !opts.Force:
		what := "exists"
		if existing.Metadata[events.PackageMetaSHA256] == "" {
			what = "exists, from a push that did not complete,"
		}
		return Info{}, fmt.Errorf("%w: %s already %s in %s: push it under a new version, or replace it with --force", ErrExists, spec, what, events.BucketPackages)
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return Info{}, fmt.Errorf("%w: looking up %s: %w", ErrRead, spec, err)
	}

	info := Info{Name: opts.Name, Version: opts.Version, PushedBy: opts.PushedBy, PushedAt: p.now().UTC().Truncate(time.Second)}
	meta := map[string]string{
		events.PackageMetaName: opts.Name, events.PackageMetaVersion: opts.Version,
		events.PackageMetaPushedBy: info.PushedBy, events.PackageMetaPushedAt: info.PushedAt.Format(time.RFC3339),
	}
	if st.IsDir() {
		info.Format = events.PackageFormatTarGz
	} else {
		info.Format, info.File = events.PackageFormatFile, filepath.Base(path)
		meta[events.PackageMetaFile], meta[events.PackageMetaMode] = info.File, fmt.Sprintf("%04o", archive.FileMode(st.Mode()))
	}
	meta[events.PackageMetaFormat] = info.Format

	// A put the broker did not take (a leader election, a lost answer) is
	// sent again whole, from the content read anew: the object store
	// replaces what a failed put left, and the package is usable only once
	// the commit below records its sha256.
	var stored *jetstream.ObjectInfo
	var cr *countingReader
	err = backoff.Retry(ctx, backoff.Policy{Backoff: backoff.Broker.Backoff, Retryable: backoff.Transient}, func(ctx context.Context) error {
		var perr error
		stored, cr, perr = putContent(ctx, obs, path, st.IsDir(), spec, meta, opts.Progress)
		return perr
	})
	var pe packError
	if errors.As(err, &pe) {
		return Info{}, pe.err
	}
	if err != nil {
		return Info{}, fmt.Errorf("%w: storing %s: %w (an incomplete package may remain: push it again with --force)", ErrPush, spec, err)
	}
	// The object store hashed the content as it sent it: its digest is the
	// sha256 of exactly the bytes stored (hashing them again here would
	// cost a fifth of the push's time).
	info.Size = cr.n
	sum, err := jetstream.DecodeObjectDigest(stored.Digest)
	if err != nil || len(sum) != sha256.Size {
		return Info{}, fmt.Errorf("%w: %s: the object store recorded no usable digest (%q): push it again with --force", ErrPush, spec, stored.Digest)
	}
	info.SHA256 = hex.EncodeToString(sum)
	if stored.Size != uint64(info.Size) {
		return Info{}, fmt.Errorf("%w: %s: the object store recorded %d bytes, %d were sent: push it again with --force", ErrPush, spec, stored.Size, info.Size)
	}
	// The commit: recording the sha256 makes the package usable.
	meta[events.PackageMetaSHA256], meta[events.PackageMetaSize] = info.SHA256, strconv.FormatInt(info.Size, 10)
	commit := jetstream.ObjectMeta{Name: spec, Description: stored.Description, Headers: stored.Headers, Metadata: meta}
	if err := backoff.RetryBroker(ctx, func(ctx context.Context) error { return obs.UpdateMeta(ctx, spec, commit) }); err != nil {
		return Info{}, fmt.Errorf("%w: recording the sha256 of %s: %w (the package stays incomplete: push it again with --force)", ErrPush, spec, err)
	}
	info.Complete = true
	return info, nil
}

// packError is an error of the packer (or of reading the file), not of the
// broker: it is not retried, and returned as it is.
type packError struct{ err error }

func (e packError) Error() string { return e.err.Error() }

// putContent stores the content at path (a directory packed by archive.Pack, or
// a file as it is) as object spec.
func putContent(ctx context.Context, obs jetstream.ObjectStore, path string, dir bool, spec string, meta map[string]string,
	progress func(sent, total int64)) (*jetstream.ObjectInfo, *countingReader, error) {
	var content io.Reader
	total := int64(-1)
	stopContent := func() {}
	packErr := make(chan error, 1) // the packer's outcome; nil for a file
	if dir {
		pr, pw := io.Pipe()
		go func() {
			err := archive.Pack(ctx, path, pw)
			pw.CloseWithError(err)
			packErr <- err
		}()
		stopContent = func() { pr.Close() } // unblocks the packer if the put stopped first
		content = pr
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, backoff.Permanent(packError{fmt.Errorf("%w: %w", ErrInvalidContent, err)})
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, nil, backoff.Permanent(packError{fmt.Errorf("%w: %w", ErrInvalidContent, err)})
		}
		content, total = f, st.Size()
		packErr <- nil
	}
	cr := &countingReader{r: content, total: total, progress: progress}
	stored, err := obs.Put(ctx, jetstream.ObjectMeta{
		Name:        spec,
		Description: "pcm package " + spec,
		Metadata:    meta,
		Opts:        &jetstream.ObjectMetaOptions{ChunkSize: packageChunkSize},
	}, cr)
	stopContent()
	// A put that read to the end saw the packer finish; one that failed may
	// have failed because of the packer, whose error then says more.
	if perr := <-packErr; perr != nil && !errors.Is(perr, io.ErrClosedPipe) {
		switch {
		case errors.Is(perr, archive.ErrRefused):
			perr = fmt.Errorf("%w: %w", ErrInvalidContent, perr)
		case ctx.Err() == nil:
			perr = fmt.Errorf("%w: %w", ErrPush, perr)
		}
		return nil, nil, backoff.Permanent(packError{perr})
	}
	return stored, cr, err
}

// countingReader counts what it reads, and reports progress.
type countingReader struct {
	r        io.Reader
	n, total int64
	progress func(sent, total int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.n += int64(n)
		if c.progress != nil {
			c.progress(c.n, c.total)
		}
	}
	return n, err
}

// Info returns the package stored under spec ("NAME@VERSION"), complete or
// not; ErrNotFound when there is none.
func (p *Store) Info(ctx context.Context, spec string) (Info, error) {
	name, version, err := events.ParsePackageSpec(spec)
	if err != nil {
		return Info{}, err
	}
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	var obs jetstream.ObjectStore
	err = backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		obs, err = p.js.ObjectStore(ctx, events.BucketPackages)
		return err
	})
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Info{}, fmt.Errorf("%w: %s: the broker has no %s object store (run pcm broker provision, then pcm package push)", ErrNotFound, spec, events.BucketPackages)
	}
	if err != nil {
		return Info{}, fmt.Errorf("%w: %s: %w", ErrRead, events.BucketPackages, err)
	}
	var oi *jetstream.ObjectInfo
	err = backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		oi, err = obs.GetInfo(ctx, events.PackageObjectName(name, version))
		return err
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return Info{}, fmt.Errorf("%w: %s is not in %s: push it with pcm package push PATH --name %s --version %s (pcm package list shows what exists)",
			ErrNotFound, spec, events.BucketPackages, name, version)
	}
	if err != nil {
		return Info{}, fmt.Errorf("%w: looking up %s: %w", ErrRead, spec, err)
	}
	return packageInfo(oi), nil
}

// packageInfo reads a package from its object's metadata.
func packageInfo(oi *jetstream.ObjectInfo) Info {
	m := oi.Metadata
	info := Info{
		Name: m[events.PackageMetaName], Version: m[events.PackageMetaVersion], SHA256: m[events.PackageMetaSHA256], Format: m[events.PackageMetaFormat],
		File: m[events.PackageMetaFile], PushedBy: m[events.PackageMetaPushedBy], Size: int64(oi.Size),
	}
	if info.Name == "" || info.Version == "" {
		info.Name, info.Version, _ = strings.Cut(oi.Name, "@")
	}
	if t, err := time.Parse(time.RFC3339, m[events.PackageMetaPushedAt]); err == nil {
		info.PushedAt = t
	} else {
		info.PushedAt = oi.ModTime.UTC()
	}
	if info.Format == "" {
		info.Format = events.PackageFormatFile
	}
	// Complete: the recorded sha256 is the digest of the stored chunks.
	if sum, err := jetstream.DecodeObjectDigest(oi.Digest); err == nil && info.SHA256 != "" && hex.EncodeToString(sum) == info.SHA256 &&
		m[events.PackageMetaSize] == strconv.FormatUint(oi.Size, 10) {
		info.Complete = true
	}
	return info
}

// Resolve returns the reference a job pins for spec ("NAME@VERSION"): its
// sha256 and size. It fails with ErrNotFound when the package does
// not exist or its push did not complete.
func (p *Store) Resolve(ctx context.Context, spec string) (events.PackageRef, error) {
	info, err := p.Info(ctx, spec)
	if err != nil {
		return events.PackageRef{}, err
	}
	if !info.Complete {
		return events.PackageRef{}, fmt.Errorf("%w: the push of %s did not complete: push it again with --force", ErrNotFound, spec)
	}
	return info.Ref(), nil
}

// The object store's stream and the subjects of its objects' info.
const (
	objStream       = "OBJ_" + events.BucketPackages
	objMetaSubjects = "$O." + events.BucketPackages + ".M.>"
)

// List returns every package in PCM_PACKAGES (incomplete ones included), by
// name then push time. No bucket or no package gives an empty list.
func (p *Store) List(ctx context.Context) ([]Info, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	// The objects' info, read with batched direct gets of their meta
	// subjects (nats.go's List would create a consumer).
	var out []Info
	err := streamread.Scan(ctx, p.js, objStream, streamread.Options{Filters: []string{objMetaSubjects}}, func(m streamread.Msg) error {
		var oi jetstream.ObjectInfo
		if json.Unmarshal(m.Data, &oi) != nil || oi.Deleted {
			return nil
		}
		oi.ModTime = m.Time
		out = append(out, packageInfo(&oi))
		return nil
	})
	switch {
	case errors.Is(err, streamread.ErrNoStream):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: listing %s: %w", ErrRead, events.BucketPackages, err)
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Name != out[b].Name {
			return out[a].Name < out[b].Name
		}
		if !out[a].PushedAt.Equal(out[b].PushedAt) {
			return out[a].PushedAt.Before(out[b].PushedAt)
		}
		return out[a].Version < out[b].Version
	})
	return out, nil
}

// Remove deletes the package stored under spec ("NAME@VERSION"). Jobs that
// pin it still run on agents that have it cached; the others report them
// failed (package missing).
func (p *Store) Remove(ctx context.Context, spec string) error {
	name, version, err := events.ParsePackageSpec(spec)
	if err != nil {
		return err
	}
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	obs, err := p.bucket(ctx)
	if err != nil {
		return err
	}
	// Delete does not tell an object removed before from one removed now.
	_, err = obs.GetInfo(ctx, events.PackageObjectName(name, version))
	if err == nil {
		err = obs.Delete(ctx, events.PackageObjectName(name, version))
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w: %s is not in %s (pcm package list shows what exists)", ErrNotFound, spec, events.BucketPackages)
	}
	if err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrPush, spec, err)
	}
	return nil
}

// Pin is how a job pins its package: it looks ref up in PCM_PACKAGES and
// fills in its sha256 and size, or checks those the job gives against the
// stored ones. A name, version or sha256 that breaks the rules fails with
// events.ErrInvalidPackage, a package not stored (or whose push did not
// complete) with ErrNotFound, one whose stored content is not what ref
// gives with ErrMismatch.
func (p *Store) Pin(ctx context.Context, ref events.PackageRef) (events.PackageRef, error) {
	if err := events.ValidPackagePart("name", ref.Name); err != nil {
		return ref, err
	}
	if err := events.ValidPackagePart("version", ref.Version); err != nil {
		return ref, err
	}
	if ref.SHA256 != "" {
		if err := ref.Validate(); err != nil {
			return ref, err
		}
	}
	stored, err := p.Resolve(ctx, events.PackageObjectName(ref.Name, ref.Version))
	if err != nil {
		return ref, err
	}
	spec := events.PackageObjectName(ref.Name, ref.Version)
	if ref.SHA256 != "" && ref.SHA256 != stored.SHA256 {
		return ref, fmt.Errorf("%w: the job pins %s at sha256 %s but %s holds %s: leave the sha256 out to pin the stored content, or push the intended content",
			ErrMismatch, spec, ref.SHA256, events.BucketPackages, stored.SHA256)
	}
	if ref.Size != 0 && ref.Size != stored.Size {
		return ref, fmt.Errorf("%w: the job gives %s a size of %d bytes but %s holds %d", ErrMismatch, spec, ref.Size, events.BucketPackages, stored.Size)
	}
	return stored, nil
}
