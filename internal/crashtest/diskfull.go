package crashtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/limitgraph/limit/sdk/storage"
)

// ErrCannotMount marks a machine where MountTmpfs is impossible (not root, no
// CAP_SYS_ADMIN, no tmpfs); the error says why.
var ErrCannotMount = errors.New("cannot mount a tmpfs here")

// MountTmpfs mounts a tmpfs of size bytes on dir and returns a function that unmounts it.
func MountTmpfs(dir string, size int64) (func() error, error) {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		reason := err.Error()
		if errors.Is(err, syscall.EPERM) {
			reason = fmt.Sprintf("%v (uid %d; mounting needs root with CAP_SYS_ADMIN)", err, os.Geteuid())
		}
		return nil, fmt.Errorf("%w: mount -t tmpfs -o size=%d tmpfs %s: %s", ErrCannotMount, size, dir, reason)
	}
	return func() error { return syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}

// DiskFullReport tells what DiskFull saw.
type DiskFullReport struct {
	Backend string
	// Acked is the number of writes acknowledged before the disk was full, and AckedBytes
	// their value bytes.
	Acked      int
	AckedBytes int64
	// FullErr is the error of the first write refused for lack of space.
	FullErr string
	// Refused counts the writes refused for lack of space.
	Refused int
	// RestartErr is the error of restarting the plugin (after SIGKILL) while the disk was
	// still full, or "" when it restarted.
	RestartErr string
	// AfterFree is the number of writes acknowledged once space was freed.
	AfterFree int
}

// String renders the report on one line.
func (r DiskFullReport) String() string {
	restart := "restarted fine while full"
	if r.RestartErr != "" {
		restart = "restart while full refused: " + r.RestartErr
	}
	return fmt.Sprintf("%s: %d writes (%.1f KiB) acknowledged, then %d refused with %q; %s; all acknowledged intact; %d writes after freeing space",
		r.Backend, r.Acked, float64(r.AckedBytes)/1024, r.Refused, r.FullErr, restart, r.AfterFree)
}

// DiskFull runs the backend on a small file system at dir (the plugin's data directory;
// b.DataDir is set to it), which the caller mounted (MountTmpfs). It takes filler bytes
// of the space first, then writes checksummed values through the plugin until writes are
// refused, and checks:
//   - the refusal is storage.ErrNoSpace (through the plugin boundary), and stays so;
//   - every acknowledged write is intact, in the running plugin, after a SIGKILL and
//     restart on the full disk (or the restart fails with a clear error), and after the
//     filler is removed;
//   - once space is freed, writes succeed again.
func DiskFull(ctx context.Context, b Backend, dir string, filler int64) (DiskFullReport, error) {
	rep := DiskFullReport{Backend: b.Name}
	b.DataDir = dir
	if err := becomeSubreaper(); err != nil {
		return rep, err
	}
	fillPath := filepath.Join(dir, "filler")
	if err := os.WriteFile(fillPath, make([]byte, filler), 0o600); err != nil {
		return rep, fmt.Errorf("write %d bytes of filler: %w", filler, err)
	}
	s, pid, stop, err := launch(ctx, b)
	if err != nil {
		return rep, fmt.Errorf("start on the small file system: %w", err)
	}
	defer func() { stop() }()

	const ns = "diskfull"
	rng := rand.New(rand.NewPCG(1, 2))
	ledger := NewLedger()
	apply := func(line string) {
		_ = ledger.Apply(0, line)
	}
	payload := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	var fullErr error
	for i := 0; fullErr == nil; i++ {
		if i > 100000 {
			return rep, errors.New("the disk never filled up")
		}
		size := 1<<10 + rng.IntN(16<<10)
		if i%5 == 4 {
			// A batch of three.
			id := fmt.Sprintf("%sb%06d", roundPrefix(0), i)
			keys := make([]string, 3)
			ops := make([]storage.Op, 3)
			var n int64
			for j := range ops {
				keys[j] = fmt.Sprintf("%s/%d", id, j)
				v := encode(record{Key: keys[j], Batch: id, BatchSize: 3}, payload(size/3))
				n += int64(len(v))
				ops[j] = storage.Op{Kind: storage.OpPut, Key: []byte(keys[j]), Value: v}
			}
			if fullErr = s.Batch(ctx, ns, ops); fullErr == nil {
				apply(ackBatch + " " + strings.Join(keys, ","))
				rep.Acked++
				rep.AckedBytes += n
			}
			continue
		}
		k := fmt.Sprintf("%sp%06d", roundPrefix(0), i)
		v := encode(record{Key: k}, payload(size))
		if fullErr = s.Put(ctx, ns, []byte(k), v); fullErr == nil {
			apply(ackPut + " " + k)
			rep.Acked++
			rep.AckedBytes += int64(len(v))
		}
	}
	rep.FullErr = fullErr.Error()
	if !errors.Is(fullErr, storage.ErrNoSpace) {
		return rep, fmt.Errorf("after %d writes, a write failed with %q, which is not storage.ErrNoSpace", rep.Acked, fullErr)
	}
	rep.Refused++
	// More writes, small and large, are refused the same way, and do not break the store.
	for i, size := range []int{100, 64 << 10, 10, 1 << 20} {
		k := fmt.Sprintf("%sfull%d", roundPrefix(0), i)
		err := s.Put(ctx, ns, []byte(k), encode(record{Key: k}, payload(size)))
		switch {
		case err == nil:
			apply(ackPut + " " + k) // a small one may fit in a freed page
			rep.Acked++
		case errors.Is(err, storage.ErrNoSpace):
			rep.Refused++
		default:
			return rep, fmt.Errorf("a %d-byte write on the full disk failed with %q, which is not storage.ErrNoSpace", size, err)
		}
	}
	check := func(when string) error {
		c, err := ledger.Verify(ctx, s, ns, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", when, err)
		}
		if len(c.Violations) > 0 {
			return fmt.Errorf("%s: %w", when, &ViolationError{Violations: c.Violations})
		}
		return nil
	}
	if err := check("on the full disk"); err != nil {
		return rep, err
	}

	// SIGKILL on the full disk, restart there.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return rep, err
	}
	stop()
	if err := waitGone(pid, roundWait); err != nil {
		return rep, err
	}
	s, pid, stop, err = launch(ctx, b)
	if err != nil {
		rep.RestartErr = err.Error()
		stop = func() {}
	} else if err := check("after SIGKILL and restart on the full disk"); err != nil {
		return rep, err
	}

	// Free the space: the store works again and holds everything.
	if err := os.Remove(fillPath); err != nil {
		return rep, err
	}
	if rep.RestartErr != "" {
		if s, pid, stop, err = launch(ctx, b); err != nil {
			return rep, fmt.Errorf("restart once space was freed: %w", err)
		}
	}
	_ = pid
	if err := check("once space was freed"); err != nil {
		return rep, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 20 && time.Now().Before(deadline); i++ {
		k := fmt.Sprintf("%sfree%d", roundPrefix(0), i)
		if err := s.Put(ctx, ns, []byte(k), encode(record{Key: k}, payload(4<<10))); err != nil {
			return rep, fmt.Errorf("write %d once space was freed: %w", i, err)
		}
		apply(ackPut + " " + k)
		rep.AfterFree++
	}
	if err := check("after writing again"); err != nil {
		return rep, err
	}
	return rep, nil
}
