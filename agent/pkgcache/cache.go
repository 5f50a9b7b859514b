package pkgcache

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults of Config.
const (
	// DefaultMaxBytes is the size limit of a cache: 2 GiB.
	DefaultMaxBytes = 2 << 30
	// DefaultStallTimeout is how long a download may receive nothing
	// before it is abandoned and resumed.
	DefaultStallTimeout = 30 * time.Second
	// DefaultRetries is how many times in a row a download that makes no
	// progress is resumed before Fetch gives up (ErrDownload).
	DefaultRetries = 3
)

// File names inside the cache directory: <sha256> is the content,
// <sha256>.json its record, tmp-* a download in progress.
const (
	recordSuffix = ".json"
	tmpPrefix    = "tmp-"
)

var shaPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Config configures a Cache.
type Config struct {
	// Dir is the cache directory, created if missing (the agent uses
	// <state dir>/packages). Required.
	Dir string
	// MaxBytes bounds the content kept, in bytes; default DefaultMaxBytes.
	MaxBytes int64
	// StallTimeout abandons (and resumes) a download that receives nothing
	// for this long; default DefaultStallTimeout.
	StallTimeout time.Duration
	// Retries is how many stalled or failed attempts in a row, without
	// progress, a download survives; default DefaultRetries.
	Retries int
	// Progress, when set, is called as a download advances with the
	// package, the bytes received and the total.
	Progress func(e Entry, received, total int64)
	// Logger; nil means no logs.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate checks the configuration as Open uses it (defaults applied).
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty: give the cache directory", ErrInvalidConfig)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: MaxBytes %d is negative: give a size in bytes (0 for the default, %d)", ErrInvalidConfig, c.MaxBytes, int64(DefaultMaxBytes))
	case c.StallTimeout < 0:
		return fmt.Errorf("%w: StallTimeout %s is negative", ErrInvalidConfig, c.StallTimeout)
	case c.Retries < 0:
		return fmt.Errorf("%w: Retries %d is negative", ErrInvalidConfig, c.Retries)
	}
	return nil
}

// Entry is a package in the cache.
type Entry struct {
	// Name and Version of the package the content was fetched as.
	Name    string `json:"name"`
	Version string `json:"version"`
	// SHA256 is the hex digest of the content, its key in the cache.
	SHA256 string `json:"sha256"`
	// Size of the content in bytes.
	Size int64 `json:"size"`
	// Format is events.PackageFormatFile or events.PackageFormatTarGz.
	Format string `json:"format"`
	// File is the name a file package is copied under.
	File string `json:"file,omitempty"`
	// Mode is the permission a file package is copied with.
	Mode fs.FileMode `json:"mode,omitempty"`
	// FetchedAt is when the content was downloaded.
	FetchedAt time.Time `json:"fetched_at"`
	// Path is the content's file in the cache (not recorded).
	Path string `json:"-"`
	// Downloaded is true when the Fetch that returned the entry downloaded
	// it, false when it was in the cache already (not recorded).
	Downloaded bool `json:"-"`
}

// Stats are counters of a Cache since Open, and its current content.
type Stats struct {
	// Hits counts fetches served from the cache, without a download.
	Hits int64
	// Downloads counts packages downloaded completely and verified.
	Downloads int64
	// DownloadedBytes is the content received by downloads, resumed parts
	// included once.
	DownloadedBytes int64
	// Resumes counts downloads that stalled or failed and went on.
	Resumes int64
	// Evictions counts content removed to make room.
	Evictions int64
	// Entries and Bytes are the content held now.
	Entries int
	Bytes   int64
	// Pinned is the number of digests pinned now.
	Pinned int
}

// cached is an entry of the index.
type cached struct {
	Entry
	lastUsed time.Time
}

// Cache is a content cache of packages keyed by sha256. It is safe for
// concurrent use; concurrent fetches of the same content download it once.
type Cache struct {
	cfg Config
	log *zap.Logger

	mu       sync.Mutex
	entries  map[string]*cached
	used     int64 // bytes of the entries
	reserved int64 // bytes of downloads in progress
	pins     map[string]int
	inflight map[string]chan struct{}
	stats    Stats
}

// Open opens (creating it if needed) the cache in cfg.Dir. It removes what
// an interrupted download left (temporary files, a record without its
// content), indexes the content present by its last use, and evicts down
// to cfg.MaxBytes if the limit was lowered.
func Open(cfg Config) (*Cache, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: creating the cache directory: %w", ErrInvalidConfig, err)
	}
	c := &Cache{
		cfg: cfg, log: cfg.Logger,
		entries: map[string]*cached{}, pins: map[string]int{}, inflight: map[string]chan struct{}{},
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.evictLocked(0)
	c.mu.Unlock()
	return c, nil
}

// load indexes the directory and cleans what is not a complete entry.
func (c *Cache) load() error {
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("%w: reading the cache directory: %w", ErrInvalidConfig, err)
	}
	names := map[string]bool{}
	for _, de := range des {
		names[de.Name()] = true
	}
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(c.cfg.Dir, name)
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			c.log.Info("removing what an interrupted download left", zap.String("file", path))
			_ = os.Remove(path)
		case strings.HasSuffix(name, recordSuffix):
			sha := strings.TrimSuffix(name, recordSuffix)
			if !shaPattern.MatchString(sha) {
				continue
			}
			if !names[sha] {
				_ = os.Remove(path)
				continue
			}
			e, err := c.readRecord(sha)
			if err != nil {
				c.log.Warn("dropping an unreadable cache entry", zap.String("sha256", sha), zap.Error(err))
				c.removeFiles(sha)
				continue
			}
			c.entries[sha] = e
			c.used += e.Size
		case shaPattern.MatchString(name):
			if !names[name+recordSuffix] {
				_ = os.Remove(path)
			}
		}
	}
	return nil
}

// readRecord reads the record of sha and checks it against the content.
func (c *Cache) readRecord(sha string) (*cached, error) {
	b, err := os.ReadFile(c.recordPath(sha))
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	fi, err := os.Stat(c.contentPath(sha))
	if err != nil {
		return nil, err
	}
	if e.SHA256 != sha || e.Size != fi.Size() {
		return nil, fmt.Errorf("record says %s, %d bytes; the content has %d bytes", e.SHA256, e.Size, fi.Size())
	}
	e.Path = c.contentPath(sha)
	return &cached{Entry: e, lastUsed: fi.ModTime()}, nil
}

func (c *Cache) contentPath(sha string) string { return filepath.Join(c.cfg.Dir, sha) }
func (c *Cache) recordPath(sha string) string  { return filepath.Join(c.cfg.Dir, sha+recordSuffix) }

// removeFiles deletes the content and the record of sha.
func (c *Cache) removeFiles(sha string) {
	_ = os.Remove(c.contentPath(sha))
	_ = os.Remove(c.recordPath(sha))
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.cfg.Dir }

// MaxBytes is the size limit of the cache.
func (c *Cache) MaxBytes() int64 { return c.cfg.MaxBytes }

// Pin keeps the content of sha256 from eviction until as many Unpin calls
// as Pin calls were made. Pin a job's package as soon as the job is
// pending, before its content is fetched: a pinned digest that is not in the
// cache yet is kept once it arrives.
func (c *Cache) Pin(sha256 string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pins[sha256]++
}

// Unpin releases one Pin of sha256.
func (c *Cache) Unpin(sha256 string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pins[sha256] <= 1 {
		delete(c.pins, sha256)
		return
	}
	c.pins[sha256]--
}

// Has reports whether the content of sha256 is in the cache.
func (c *Cache) Has(sha256 string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[sha256]
	return ok
}

// Entries lists the content held, least recently used first.
func (c *Cache) Entries() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.lruLocked() {
		out = append(out, e.Entry)
	}
	return out
}

// Stats returns the counters and the current content.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries, s.Bytes, s.Pinned = len(c.entries), c.used, len(c.pins)
	return s
}

// lruLocked returns the entries, least recently used first.
func (c *Cache) lruLocked() []*cached {
	list := make([]*cached, 0, len(c.entries))
	for _, e := range c.entries {
		list = append(list, e)
	}
	sort.Slice(list, func(a, b int) bool {
		if !list[a].lastUsed.Equal(list[b].lastUsed) {
			return list[a].lastUsed.Before(list[b].lastUsed)
		}
		return list[a].SHA256 < list[b].SHA256
	})
	return list
}

// evictLocked removes unpinned content, least recently used first, until
// need more bytes fit under the limit (or nothing unpinned is left).
func (c *Cache) evictLocked(need int64) {
	if c.used+c.reserved+need <= c.cfg.MaxBytes {
		return
	}
	for _, e := range c.lruLocked() {
		if c.used+c.reserved+need <= c.cfg.MaxBytes {
			return
		}
		if c.pins[e.SHA256] > 0 {
			continue
		}
		c.removeFiles(e.SHA256)
		delete(c.entries, e.SHA256)
		c.used -= e.Size
		c.stats.Evictions++
		c.log.Info("evicted a package from the cache", zap.String("package", e.Name+"@"+e.Version),
			zap.String("sha256", e.SHA256), zap.Int64("size", e.Size), zap.Time("last_used", e.lastUsed))
	}
}

// reserve makes room for a download of size bytes.
func (c *Cache) reserve(e Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Size > c.cfg.MaxBytes {
		return fmt.Errorf("%w: %s@%s is %d bytes, the cache holds at most %d: raise the agent's --cache-size",
			ErrTooLarge, e.Name, e.Version, e.Size, c.cfg.MaxBytes)
	}
	c.evictLocked(e.Size)
	if c.used+c.reserved+e.Size > c.cfg.MaxBytes {
		return fmt.Errorf("%w: %s@%s needs %d bytes; %d of %d are held by pinned packages or downloads in progress: it is fetched when they are done",
			ErrCacheFull, e.Name, e.Version, e.Size, c.used+c.reserved, c.cfg.MaxBytes)
	}
	c.reserved += e.Size
	return nil
}

func (c *Cache) unreserve(size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reserved -= size
}

// touch records a use of e now, in the index and as the content's
// modification time (so the order survives a restart).
func (c *Cache) touch(sha string) {
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.entries[sha]; ok {
		e.lastUsed = now
	}
	c.mu.Unlock()
	_ = os.Chtimes(c.contentPath(sha), now, now)
}

// drop forgets the entry of sha and removes its files (damaged content).
func (c *Cache) drop(sha string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[sha]; ok {
		c.used -= e.Size
		delete(c.entries, sha)
	}
	c.removeFiles(sha)
}

// commit moves a verified download into place: its record first, then
// the content, whose rename is the commit; both fsynced.
func (c *Cache) commit(tmp string, e Entry) (Entry, error) {
	e.Path = c.contentPath(e.SHA256)
	b, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	rec, err := os.CreateTemp(c.cfg.Dir, tmpPrefix+"record-*")
	if err != nil {
		return e, err
	}
	_, err = rec.Write(b)
	if err == nil {
		err = rec.Sync()
	}
	if cerr := rec.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(rec.Name(), c.recordPath(e.SHA256))
	}
	if err != nil {
		_ = os.Remove(rec.Name())
		return e, err
	}
	if err := os.Rename(tmp, e.Path); err != nil {
		_ = os.Remove(c.recordPath(e.SHA256))
		return e, err
	}
	syncDir(c.cfg.Dir)
	now := time.Now()
	c.mu.Lock()
	if old, ok := c.entries[e.SHA256]; ok {
		c.used -= old.Size
	}
	c.entries[e.SHA256] = &cached{Entry: e, lastUsed: now}
	c.used += e.Size
	c.stats.Downloads++
	c.mu.Unlock()
	return e, nil
}

// syncDir fsyncs a directory so that renames in it are durable.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
