// Package backup makes and reads online backups of a host: the storage's every key as of
// one point in time (storage.Snapshotter) and the files of data_dir a host cannot do
// without (its provenance key, its node id, the journal of pending outcomes), in one
// gzip-compressed tar archive.
//
// # Archive
//
//	limit-backup.json   the Manifest, first
//	data/<path>         each file of data_dir the manifest lists, with its SHA-256
//	storage.jsonl       one JSON object per key, {"n": namespace, "k": key, "v": value}
//	                    (key and value base64), ordered by namespace and then key
//
// The storage is copied to a file under data_dir first, as fast as the backend streams it,
// so the backend's point-in-time view is held no longer than it takes to read it, whatever
// the speed of the client that downloads the archive. The journal's files are taken before
// the storage: an outcome the journal hands to storage meanwhile is then in both, and
// replaying it again after a restore is harmless; taken after, it could be in neither.
//
// A restore (Open, then Archive.Items) checks everything before anything is written: the
// manifest's format, every file's size and SHA-256, the storage file's SHA-256, item count
// and every item's namespace, key and value against the protocol's limits.
package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/limitgraph/limit/sdk/storage"
)

// Format names the archive's layout; a reader refuses others.
const Format = "limit-backup/1"

// Names of the archive's members.
const (
	ManifestName = "limit-backup.json"
	StorageName  = "storage.jsonl"
	dataPrefix   = "data/"
)

// tempPrefix begins the name of the folder under data_dir a backup is made in.
const tempPrefix = "backup-"

// tempSuffix ends it.
const tempSuffix = ".tmp"

// Manifest describes a backup.
type Manifest struct {
	Format string    `json:"format"`
	Made   time.Time `json:"made"`
	// Version is the limitd that made it.
	Version string `json:"limitd_version"`
	// Node is the host's node id; KeyFingerprint its provenance key's.
	Node           string `json:"node"`
	KeyFingerprint string `json:"key_fingerprint"`
	// StorageFormat is the host's storage format (a limitd that reads a lower one refuses
	// to restore it).
	StorageFormat int         `json:"storage_format"`
	Storage       StorageInfo `json:"storage"`
	Files         []File      `json:"files"`
}

// StorageInfo describes the storage part of a backup.
type StorageInfo struct {
	// Plugin and PluginVersion name the backend it was read from (a restore may write it
	// to another).
	Plugin        string `json:"plugin"`
	PluginVersion string `json:"plugin_version"`
	Keys          int64  `json:"keys"`
	Namespaces    int64  `json:"namespaces"`
	// Bytes is the size of storage.jsonl; SHA256 its digest.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// File is one file of data_dir in a backup.
type File struct {
	// Path is relative to data_dir, with forward slashes.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Source is what a backup is made of.
type Source struct {
	// DataDir is the host's data_dir; the backup is made in a folder under it.
	DataDir string
	// Files are data_dir's files to include, relative to it; a missing one is an error.
	Files []string
	// Dirs are data_dir's folders whose regular files (not sub-folders) are included;
	// a missing one is empty.
	Dirs []string
	// Store is the storage to snapshot.
	Store storage.Snapshotter
	// Manifest fields the caller knows: Version, Node, KeyFingerprint, StorageFormat and
	// Storage.Plugin, Storage.PluginVersion.
	Manifest Manifest
	// Progress, when set, is called as the storage is read, with the keys read so far.
	Progress func(keys int64)
	// Room, when set, reports the free space of DataDir's disk and the reserve the copy
	// must leave (host.min_free_disk): the copy stops with ErrNoRoom before it would take
	// the disk below the reserve and the margin, so that a backup never makes the host
	// refuse executions. ok false: not measured.
	Room func() (free, reserve uint64, ok bool)
}

// ErrNoRoom is a backup given up because its copy would have taken the disk of data_dir
// below host.min_free_disk.
var ErrNoRoom = errors.New("data_dir's disk has no room for the backup's copy of the storage above host.min_free_disk")

// roomMargin is the space a backup's copy leaves above the reserve, and roomEvery how
// much it writes between two measures of the disk.
const (
	roomMargin = 16 << 20
	roomEvery  = 4 << 20
)

// Backup is a backup made and waiting to be written out. Close removes its files.
type Backup struct {
	dir      string
	manifest Manifest
}

// storageItem is one line of storage.jsonl.
type storageItem struct {
	N string `json:"n"`
	K []byte `json:"k"`
	V []byte `json:"v"`
}

// Prepare makes a backup of src in a new folder under src.DataDir: copies of the listed
// files (hard links where the file system allows: the host replaces these files, never
// changes them in place), then the storage's snapshot. The storage is read once, as fast
// as the backend gives it; call WriteTo to send the archive, and Close.
func Prepare(ctx context.Context, src Source) (b *Backup, err error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	dir := filepath.Join(src.DataDir, tempPrefix+time.Now().UTC().Format("20060102T150405")+"-"+hex.EncodeToString(rnd[:])+tempSuffix)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make the backup's folder: %w", err)
	}
	made := &Backup{dir: dir, manifest: src.Manifest}
	b = made
	defer func() {
		if err != nil {
			made.Close()
		}
	}()
	b.manifest.Format = Format
	b.manifest.Files = nil
	paths := slices.Clone(src.Files)
	for _, d := range src.Dirs {
		ents, err := os.ReadDir(filepath.Join(src.DataDir, d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", d, err)
		}
		for _, e := range ents {
			// A name with a leading dot is a file being written (the journal's .tmp-*).
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				paths = append(paths, filepath.ToSlash(filepath.Join(d, e.Name())))
			}
		}
	}
	for _, p := range paths {
		f, err := copyFile(filepath.Join(src.DataDir, filepath.FromSlash(p)), filepath.Join(dir, "data", filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) && !slices.Contains(src.Files, p) {
			continue // a journal file replayed meanwhile: its outcome is in storage
		}
		if err != nil {
			return nil, err
		}
		f.Path = p
		b.manifest.Files = append(b.manifest.Files, f)
	}
	b.manifest.Storage.Keys, b.manifest.Storage.Namespaces, b.manifest.Storage.Bytes, b.manifest.Storage.SHA256, err = dumpStorage(ctx, src.Store, filepath.Join(dir, StorageName), src.Progress, src.Room)
	if err != nil {
		return nil, err
	}
	b.manifest.Made = time.Now().UTC()
	return b, nil
}

// copyFile links or copies from to to and returns its size and digest.
func copyFile(from, to string) (File, error) {
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return File{}, err
	}
	if err := os.Link(from, to); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return File{}, err
		}
		in, err := os.Open(from)
		if err != nil {
			return File{}, err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return File{}, err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return File{}, fmt.Errorf("copy %s: %w", from, err)
		}
		if err := out.Close(); err != nil {
			return File{}, fmt.Errorf("copy %s: %w", from, err)
		}
	}
	return digestFile(to)
}

func digestFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", path, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// dumpStorage writes st's snapshot to path as storage.jsonl.
func dumpStorage(ctx context.Context, st storage.Snapshotter, path string, progress func(int64), room func() (uint64, uint64, bool)) (keys, namespaces, size int64, digest string, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, 0, "", fmt.Errorf("make the storage's copy: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	enc := json.NewEncoder(bw)
	lastNS, first := "", true
	next := time.Now().Add(time.Second)
	checked := int64(-roomEvery) // measure before the first write
	err = st.Snapshot(ctx, func(ns string, key, value []byte) error {
		if room != nil && cw.n+int64(bw.Buffered())-checked >= roomEvery {
			checked = cw.n + int64(bw.Buffered())
			if free, reserve, ok := room(); ok && free < reserve+roomMargin+roomEvery+uint64(bw.Size()) {
				return fmt.Errorf("%w (%d bytes copied, %d free, a reserve of %d)", ErrNoRoom, checked, free, reserve)
			}
		}
		if first || ns != lastNS {
			namespaces++
			first, lastNS = false, ns
		}
		keys++
		if progress != nil && time.Now().After(next) {
			progress(keys)
			next = time.Now().Add(time.Second)
		}
		return enc.Encode(storageItem{N: ns, K: key, V: value})
	})
	if err != nil {
		return 0, 0, 0, "", err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, 0, "", fmt.Errorf("write the storage's copy: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, 0, "", fmt.Errorf("write the storage's copy: %w", err)
	}
	if progress != nil {
		progress(keys)
	}
	return keys, namespaces, cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Manifest returns the backup's manifest.
func (b *Backup) Manifest() Manifest { return b.manifest }

// WriteTo writes the archive (gzip-compressed tar) to w.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(zw)
	man, err := json.MarshalIndent(b.manifest, "", "  ")
	if err != nil {
		return cw.n, err
	}
	man = append(man, '\n')
	mod := b.manifest.Made
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(man)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return cw.n, err
	}
	if _, err := tw.Write(man); err != nil {
		return cw.n, err
	}
	add := func(name, path string, size int64) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		// A file that changed since its digest was taken makes a short or long copy:
		// tar refuses both, and the archive is not finished.
		_, err = io.Copy(tw, f)
		return err
	}
	for _, f := range b.manifest.Files {
		if err := add(dataPrefix+f.Path, filepath.Join(b.dir, "data", filepath.FromSlash(f.Path)), f.Size); err != nil {
			return cw.n, err
		}
	}
	if err := add(StorageName, filepath.Join(b.dir, StorageName), b.manifest.Storage.Bytes); err != nil {
		return cw.n, err
	}
	if err := tw.Close(); err != nil {
		return cw.n, err
	}
	if err := zw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// Close removes the backup's folder.
func (b *Backup) Close() error { return os.RemoveAll(b.dir) }

// SweepTemp removes the folders of backups, and the copies of archives restores read from
// a pipe, that a host or a restore stopped or killed in the middle of left under dataDir,
// and returns how many.
func SweepTemp(dataDir string) (int, error) {
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		// A backup's folder, or the copy of an archive a restore read from a pipe.
		if (e.IsDir() && strings.HasPrefix(e.Name(), tempPrefix) || e.Type().IsRegular() && strings.HasPrefix(e.Name(), "restore-")) &&
			strings.HasSuffix(e.Name(), tempSuffix) {
			if err := os.RemoveAll(filepath.Join(dataDir, e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
