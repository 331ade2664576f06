package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/limitgraph/limit/sdk/storage"
)

// journalVersion is the format version of the journal file.
const journalVersion = 1

// journal is a committed batch: once root/journal exists, every op in it is applied,
// now or at the next start.
type journal struct {
	Version int         `json:"version"`
	Ops     []journalOp `json:"ops"`
}

// journalOp is one operation of a journal. Paths are relative to the root, so a root can
// be moved while no plugin runs.
type journalOp struct {
	// Op is "put" or "delete".
	Op string `json:"op"`
	// Target is the key's file.
	Target string `json:"target"`
	// Temp is the synced temporary file holding a put's value; a put whose temp file is
	// gone has been applied.
	Temp string `json:"temp,omitempty"`
}

// Batch implements storage.Storage. The ops are applied in order, so the last op on a key
// wins. Values go to synced temporary files, then a journal naming every op is committed
// by a rename, then the ops are applied and the journal removed. The whole batch runs
// under the exclusive lock, so readers see all of it or none.
func (s *store) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	defer s.holdWrite()()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Assertions are checked against the state before the batch, under the same lock.
	if err := storage.CheckAssertionsIn(ns, ops, func(ns string, key []byte) ([]byte, bool, error) { return s.get(ns, key) }); err != nil {
		return err
	}
	// Keep the last write on each key: the result is the same, and the journal's ops then
	// touch distinct keys, which makes replaying it idempotent.
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		if !op.IsAssertion() {
			last[op.In(ns)+"\x00"+string(op.Key)] = i
		}
	}
	final := make([]storage.Op, 0, len(last))
	for i, op := range ops {
		if !op.IsAssertion() && last[op.In(ns)+"\x00"+string(op.Key)] == i {
			final = append(final, op)
		}
	}
	switch len(final) {
	case 0:
		return nil
	case 1:
		// One op is atomic by itself; the exclusive lock already keeps others out.
		if final[0].Kind == storage.OpPut {
			return s.put(final[0].In(ns), final[0].Key, final[0].Value)
		}
		_, err := s.del(final[0].In(ns), final[0].Key)
		return err
	}
	return s.batch(ctx, ns, final)
}

// batchFiles writes, commits and applies a journal for ops on distinct keys. Called with s.mu
// held exclusively.
func (s *store) batchFiles(ctx context.Context, ns string, ops []storage.Op) (err error) {
	nsDirs := map[string]string{}
	var temps []string
	defer func() {
		if err != nil && !errors.Is(err, errCrash) {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	j := journal{Version: journalVersion, Ops: make([]journalOp, len(ops))}
	var values [][]byte
	var valueOps []int // index in j.Ops of each value
	for i, op := range ops {
		opNS := op.In(ns)
		nsDir, ok := nsDirs[opNS]
		if !ok {
			if nsDir, err = s.ensureNamespace(opNS); err != nil {
				return err
			}
			nsDirs[opNS] = nsDir
		}
		base := nsRel(opNS)
		dirs, file := keyParts(op.Key)
		j.Ops[i] = journalOp{Op: "delete", Target: filepath.Join(base, filepath.Join(dirs...), file)}
		if op.Kind == storage.OpPut {
			j.Ops[i].Op = "put"
			values = append(values, op.Value)
			valueOps = append(valueOps, i)
			// Create the key's directories now: a mkdir can fail for lack of space, and
			// after the commit nothing should fail that can be avoided.
			if _, err := s.mkdirs(nsDir, dirs); err != nil {
				return s.ioErr("create key directory", err)
			}
		}
	}
	temps, err = s.writeTemps(ctx, values)
	if err != nil {
		return err
	}
	for n, i := range valueOps {
		j.Ops[i].Temp = filepath.Join(tmpDirName, filepath.Base(temps[n]))
	}
	newPath, err := s.writeJournal(j)
	if err != nil {
		return err
	}
	temps = append(temps, newPath)
	if s.faults != nil && s.faults.beforeCommit != nil {
		if err := s.faults.beforeCommit(); err != nil {
			return err
		}
	}
	if err := os.Rename(newPath, filepath.Join(s.root, journalName)); err != nil {
		return s.ioErr("commit journal", err)
	}
	// The batch is committed: from here on it is applied, now or at the next start, and
	// its temporary files must stay until it is.
	temps = nil
	syncErr := s.syncDir(s.root)
	if s.faults != nil && s.faults.afterCommit != nil {
		if err := s.faults.afterCommit(); err != nil {
			return err
		}
	}
	if err := s.applyJournal(j); err != nil {
		s.logger.Warn("applying a committed batch failed, retrying once", "error", err)
		if err2 := s.applyJournal(j); err2 != nil {
			s.broken = fmt.Errorf("a committed batch could not be applied (%v); restart the plugin to replay its journal", err2)
			return fmt.Errorf("%w: %v", storage.ErrUnavailable, s.broken)
		}
	}
	// If the commit could not be synced, the batch is applied but a crash may still undo
	// it as a whole: the caller must not count it as durable.
	return syncErr
}

// tempWriters bounds the values of a batch written and synced at the same time. Syncs
// issued together share the file system's journal commits, so a batch of 100 values costs
// a few commits instead of 100.
const tempWriters = 16

// writeTemps writes every value to a synced temporary file, several at a time, and
// returns their paths in order. On failure it removes those it wrote.
func (s *store) writeTemps(ctx context.Context, values [][]byte) ([]string, error) {
	paths := make([]string, len(values))
	errs := make([]error, len(values))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(tempWriters, len(values)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(values) {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[i] = err
					next.Store(int64(len(values)))
					return
				}
				paths[i], errs[i] = s.writeTemp(values[i])
				if errs[i] != nil {
					next.Store(int64(len(values))) // stop the others early
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			for _, p := range paths {
				if p != "" {
					os.Remove(p)
				}
			}
			return nil, err
		}
	}
	return paths, nil
}

// writeJournal writes j, synced, to tmp/journal.new and returns its path.
func (s *store) writeJournal(j journal) (string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("encode journal: %w", err)
	}
	path := filepath.Join(s.root, tmpDirName, journalNewName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", s.ioErr("create journal", err)
	}
	_, err = f.Write(b)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", s.ioErr("write journal", err)
	}
	return path, nil
}

// applyJournal applies a committed journal's ops idempotently, syncs every directory
// they touched, then removes the journal.
func (s *store) applyJournal(j journal) error {
	syncs := map[string]bool{}
	var pruned []string
	for _, op := range j.Ops {
		target := filepath.Join(s.root, op.Target)
		switch op.Op {
		case "put":
			temp := filepath.Join(s.root, op.Temp)
			if _, err := os.Lstat(temp); errors.Is(err, fs.ErrNotExist) {
				// Applied before the previous process died. The directories above the
				// target are still synced below, in case their entries were not.
			} else {
				if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
					return s.ioErr("create key directory", err)
				}
				if err := os.Rename(temp, target); err != nil {
					return s.ioErr("move value into place", err)
				}
			}
			// Sync the namespace directory and every directory down to the target.
			for d := filepath.Dir(op.Target); strings.Count(d, string(filepath.Separator)) >= 1; d = filepath.Dir(d) {
				syncs[d] = true
			}
		case "delete":
			if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return s.ioErr("delete value", err)
			}
			syncs[filepath.Dir(op.Target)] = true
			pruned = append(pruned, op.Target)
		default:
			return fmt.Errorf("journal op %q is unknown", op.Op)
		}
	}
	for d := range syncs {
		err := s.syncDir(filepath.Join(s.root, d))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(filepath.Join(s.root, journalName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.ioErr("remove applied journal", err)
	}
	if err := s.syncDir(s.root); err != nil {
		return err
	}
	for _, t := range pruned {
		nsDir, dirs := splitTarget(t)
		pruneDirs(filepath.Join(s.root, nsDir), dirs)
	}
	return nil
}

// splitTarget splits a key file path relative to the root, ns/<hash>/<dirs...>/<file>, into
// its namespace directory and key directories.
func splitTarget(rel string) (string, []string) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) < 3 {
		return rel, nil
	}
	return filepath.Join(parts[0], parts[1]), parts[2 : len(parts)-1]
}

// recoverJournal replays a journal a dead process committed but did not finish applying.
func (s *store) recoverJournal() error {
	path := filepath.Join(s.root, journalName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("journal %s is unreadable (%v); it holds a committed batch, so it is not discarded: restore it from a backup or remove it to give that batch up", path, err)
	}
	if err := checkJournal(j); err != nil {
		return fmt.Errorf("journal %s is invalid (%v); it holds a committed batch, so it is not discarded: remove it to give that batch up", path, err)
	}
	if err := s.applyJournal(j); err != nil {
		return fmt.Errorf("replay journal: %w", err)
	}
	s.logger.Info("replayed the journal of a batch interrupted by a crash", "ops", len(j.Ops))
	return nil
}

// checkJournal checks a journal read from disk: every path stays where it belongs.
func checkJournal(j journal) error {
	if j.Version != journalVersion {
		return fmt.Errorf("version %d, this plugin reads version %d", j.Version, journalVersion)
	}
	under := func(p, dir string, depth int) bool {
		parts := strings.Split(filepath.ToSlash(p), "/")
		return filepath.IsLocal(p) && filepath.Clean(p) == p && parts[0] == dir && len(parts) >= depth
	}
	for i, op := range j.Ops {
		if !under(op.Target, nsDirName, 3) {
			return fmt.Errorf("op %d: target %q is not a key file", i, op.Target)
		}
		switch op.Op {
		case "put":
			if !under(op.Temp, tmpDirName, 2) {
				return fmt.Errorf("op %d: temporary file %q is not in %s/", i, op.Temp, tmpDirName)
			}
		case "delete":
		default:
			return fmt.Errorf("op %d: unknown op %q", i, op.Op)
		}
	}
	return nil
}
