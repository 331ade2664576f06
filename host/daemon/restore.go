package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/fsutil"
	"github.com/limitgraph/limit/sdk/storage"
)

// restoreKey is the record, in the default tenant's index namespace, of a restore that has
// begun and not finished: the backup's node and time. A limitd refuses to start while it
// is there (the storage holds part of a backup); the restore removes it last.
const restoreKey = "meta/restore"

// restoreBatch bounds the keys and bytes of one batch a restore writes.
const (
	restoreBatchOps   = 1000
	restoreBatchBytes = 8 << 20
)

// ErrRestoreUnfinished is the refusal to start on a storage a restore did not finish.
var ErrRestoreUnfinished = errors.New("a restore into this storage did not finish")

// checkRestoreMarker refuses a storage whose restore did not finish.
func checkRestoreMarker(ctx context.Context, st storage.Storage) error {
	v, found, err := st.Get(ctx, trace.IndexNamespace(trace.DefaultTenant), []byte(restoreKey))
	if err != nil {
		return fmt.Errorf("read the storage's restore record: %w", err)
	}
	if found {
		return fmt.Errorf("%w (the backup of %s): run `limitd -restore ARCHIVE` with the same archive again to finish it", ErrRestoreUnfinished, v)
	}
	return nil
}

// RestoreResult is what a restore wrote.
type RestoreResult struct {
	Manifest backup.Manifest
	// Resumed tells that an unfinished restore of the same backup was finished.
	Resumed bool
	// Storage is the configured storage plugin written to (storage.sqlite).
	Storage string
	Keys    int64
	Files   int
}

// Restore writes the backup in the archive at path into the configured storage and
// data_dir, with no limitd running on them. Everything in the archive is checked first;
// the storage must hold nothing (or the unfinished restore of the same backup), and a
// provenance key or node id already in data_dir must be the backup's. The storage is
// written in batches under a record that makes a limitd refuse to start until the restore
// is done; data_dir's files are written next, and the record removed last, so a restore
// cut short is finished by running it again. progress gets a line every few seconds.
func Restore(ctx context.Context, opts Options, path string, progress io.Writer) (RestoreResult, error) {
	var res RestoreResult
	cfg := opts.Config
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if progress == nil {
		progress = io.Discard
	}
	dataDir, err := DataDir(cfg)
	if err != nil {
		return res, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return res, fmt.Errorf("make data_dir: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return res, err
	}
	defer lock.release()
	// The archive is read twice (checked whole, then written): one from a pipe (`-` for
	// stdin, /dev/stdin, <(…)) is copied to a file in data_dir first.
	// Messages name the archive as given, not its copy.
	name := path
	if path == "-" {
		name = "the archive on standard input"
	}
	named := func(err error) error { return errors.New(strings.ReplaceAll(err.Error(), path, name)) }
	if fi, err := os.Stat(path); path == "-" || (err == nil && !fi.Mode().IsRegular()) {
		spooled, err := spool(path, dataDir)
		if err != nil {
			return res, err
		}
		defer os.Remove(spooled)
		path = spooled
	}
	a, err := backup.Open(path, backupPath)
	if err != nil {
		return res, named(err)
	}
	m := a.Manifest
	res.Manifest = m
	if m.StorageFormat > StorageFormat {
		return res, fmt.Errorf("%s was made by a newer limitd (%s, storage format %d); this limitd reads formats up to %d: restore it with that limitd", name, m.Version, m.StorageFormat, StorageFormat)
	}
	if err := checkIdentity(a); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	run, err := openRunDir(dataDir)
	if err != nil && !run.Fallback {
		return res, err
	}
	b := cfg.SelectedStorage()
	if b == nil {
		return res, errors.New("no storage backend is configured")
	}
	spec, diags := prepareBlock(ctx, cfg, b, PluginDir(cfg, opts.DefaultPluginDir), dataDir, run.Path, logger)
	if diags.HasErrors() {
		return res, diags
	}
	res.Storage = spec.ID()
	managed, err := plugins.StartManaged(ctx, spec, logger.Named(spec.ID()), opts.HealthInterval)
	if err != nil {
		return res, fmt.Errorf("start the storage plugin %s: %w", spec.ID(), err)
	}
	defer managed.Close()
	st := plugins.NewStorage(managed)

	indexNS := trace.IndexNamespace(trace.DefaultTenant)
	mark := []byte(fmt.Sprintf("node %s, made %s", m.Node, m.Made.Format(time.RFC3339)))
	cur, found, err := st.Get(ctx, indexNS, []byte(restoreKey))
	switch {
	case err != nil:
		return res, err
	case found && !bytes.Equal(cur, mark):
		return res, fmt.Errorf("%w: the storage holds part of another backup (%s); restore that one, or empty the storage", ErrRestoreUnfinished, cur)
	case found:
		res.Resumed = true
	default:
		if ns, err := holdsData(ctx, st); err != nil {
			return res, err
		} else if ns != "" {
			return res, fmt.Errorf("the storage (%s) already holds data (namespace %q): restore into an empty storage", spec.ID(), ns)
		}
	}
	// data_dir's own files: a provenance key or node id there must be the backup's. A node
	// id beside no key was made by a limitd that never served (it makes its node id first,
	// its key once its storage is checked: a start refused on an unfinished restore, a busy
	// port): the backup's replaces it. A key never is replaced.
	_, keyErr := os.Stat(filepath.Join(dataDir, trace.KeyFile))
	noKey := errors.Is(keyErr, fs.ErrNotExist)
	replace := map[string]bool{}
	for _, f := range BackupFiles {
		want, ok := a.Files[f]
		have, err := os.ReadFile(filepath.Join(dataDir, f))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return res, err
		case ok && bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(want)):
		case (res.Resumed || noKey) && ok && f == nodeFile:
			replace[f] = true
		default:
			return res, fmt.Errorf("%s already holds another host's %s (the backup's node is %s, key %s): restore into a data_dir without it, or move it away",
				dataDir, f, m.Node, m.KeyFingerprint)
		}
	}
	if !res.Resumed {
		// Created only if absent: two restores into one empty database (several hosts
		// on one PostgreSQL) cannot both go on.
		r, err := st.CompareAndSwap(ctx, storage.CASRequest{Namespace: indexNS, Key: []byte(restoreKey), Value: mark})
		switch {
		case err != nil:
			return res, fmt.Errorf("record the restore's start: %w", err)
		case !r.Swapped:
			return res, fmt.Errorf("%w: another restore (%s) began in this storage at the same time", ErrRestoreUnfinished, r.Current)
		}
	}

	var (
		batchNS string
		ops     []storage.Op
		size    int
		next    = time.Now().Add(2 * time.Second)
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := st.Batch(ctx, batchNS, ops); err != nil {
			return fmt.Errorf("write to namespace %q: %w", batchNS, err)
		}
		ops, size = nil, 0
		return nil
	}
	err = a.Items(ctx, func(ns string, key, value []byte) error {
		if ns == indexNS && string(key) == restoreKey {
			return nil
		}
		if ns != batchNS || len(ops) == restoreBatchOps || size+len(key)+len(value) > restoreBatchBytes {
			if err := flush(); err != nil {
				return err
			}
			batchNS = ns
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: bytes.Clone(key), Value: bytes.Clone(value)})
		size += len(key) + len(value)
		res.Keys++
		if time.Now().After(next) {
			fmt.Fprintf(progress, "restored %d of %d keys\n", res.Keys, m.Storage.Keys)
			next = time.Now().Add(2 * time.Second)
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("restore the storage (run the restore again to finish it): %w", named(err))
	}
	for _, f := range m.Files {
		p := filepath.Join(dataDir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return res, err
		}
		if replace[f.Path] {
			if err := os.Remove(p); err != nil {
				return res, err
			}
		}
		err := fsutil.CreateSynced(p, a.Files[f.Path], 0o600)
		if errors.Is(err, fs.ErrExist) {
			// A restore cut short wrote it already, or (key and node id) it was checked
			// equal above; a journal file of the same name holds the same outcome.
			continue
		}
		if err != nil {
			return res, fmt.Errorf("write %s: %w", p, err)
		}
		res.Files++
	}
	if _, err := st.Delete(ctx, indexNS, []byte(restoreKey)); err != nil {
		return res, fmt.Errorf("record the restore's end (run the restore again to finish it): %w", err)
	}
	return res, nil
}

// errStop ends a snapshot walk early.
var errStop = errors.New("stop")

// holdsData returns a namespace of st that holds a key, "" when st holds none. A backend
// without snapshots is taken as empty when the host's index namespace is (every session
// and trace has a record there, and the storage format too).
func holdsData(ctx context.Context, st *plugins.Storage) (string, error) {
	var ns string
	err := st.Snapshot(ctx, func(n string, _, _ []byte) error {
		ns = n
		return errStop
	})
	switch {
	case errors.Is(err, errStop):
		return ns, nil
	case errors.Is(err, storage.ErrNoSnapshot):
		idx := trace.IndexNamespace(trace.DefaultTenant)
		page, err := st.Scan(ctx, storage.ScanRequest{Namespace: idx, Limit: 1, KeysOnly: true})
		if err != nil {
			return "", err
		}
		if len(page.Items) > 0 {
			return idx, nil
		}
		return "", nil
	}
	return "", err
}

// backupPath says whether rel is a data_dir file a backup may hold: the provenance key, the
// node id, or a file of the journal of pending outcomes.
func backupPath(rel string) bool {
	if slices.Contains(BackupFiles, rel) {
		return true
	}
	name, ok := strings.CutPrefix(rel, execution.PendingDir+"/")
	return ok && name != "" && !strings.ContainsAny(name, "/\\") && !strings.HasPrefix(name, ".")
}

// checkIdentity checks that the archive holds the host's identity whole and as its
// manifest names it: the provenance key, whose fingerprint is the manifest's, and the node
// id. Without them the restored traces would not verify, and the restored sessions would
// belong to another host.
func checkIdentity(a *backup.Archive) error {
	m := a.Manifest
	seed, ok := a.Files[trace.KeyFile]
	if !ok {
		return fmt.Errorf("the backup holds no provenance key (%s): its traces could not be verified or extended", trace.KeyFile)
	}
	k, err := trace.NewKey(seed)
	if err != nil {
		return fmt.Errorf("the backup's provenance key (%s) is not a key: %w", trace.KeyFile, err)
	}
	if k.Fingerprint() != m.KeyFingerprint {
		return fmt.Errorf("the backup's provenance key has fingerprint %s, its manifest says %s", k.Fingerprint(), m.KeyFingerprint)
	}
	id, ok := a.Files[nodeFile]
	if !ok {
		return fmt.Errorf("the backup holds no node id (%s): its sessions would belong to another host", nodeFile)
	}
	if node := strings.TrimSpace(string(id)); !execution.ValidNode(node) || node != m.Node {
		return fmt.Errorf("the backup's node id %q is not the manifest's %q, or not a node id", clip.Marked(node, 64), m.Node)
	}
	return nil
}

// spool copies the archive at path ("-": standard input) to a file in dir and returns its
// name.
func spool(path, dir string) (string, error) {
	in := os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		in = f
	}
	out, err := os.CreateTemp(dir, "restore-*.tmp")
	if err != nil {
		return "", fmt.Errorf("copy the archive to data_dir: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", fmt.Errorf("copy the archive from %s to data_dir: %w", path, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("copy the archive to data_dir: %w", err)
	}
	return out.Name(), nil
}
