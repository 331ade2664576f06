// Package diskspace keeps a reserve of free space on the disk that holds the host's
// data_dir: its database (bolt, sqlite, file), the pending-outcomes journal and the
// sessions' disk images. A session's image is sparse, so max_disk_bytes bounds one
// session, not the sum of them all: many sessions, or anything else on the machine, can
// still fill the disk. Once the disk is full, a session's image can no longer get the
// blocks its filesystem thinks it has, ext4 aborts its journal, and what the session wrote
// is lost while the code was told it succeeded. So the host refuses to start an execution
// (503, Retry-After) while the free space is below the reserve: nothing runs, nothing is
// lost, and the refusal is logged and shown in the health answer until space is freed.
package diskspace

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// ErrLow is the error (wrapped in a *LowError) of an execution refused because the host's
// disk is nearly full.
var ErrLow = errors.New("the host's disk is nearly full")

// Default reserve (Reserve's zero value): the larger of DefaultMinBytes and DefaultPercent
// of the disk.
const (
	DefaultMinBytes = 256 << 20
	DefaultPercent  = 2.0
)

// Reserve is how much free space to keep on the data_dir's disk: Bytes, or Percent of the
// disk's size when Percent is set. The zero value is the default (the larger of 256 MiB and
// 2 % of the disk); Off turns the check off.
type Reserve struct {
	Bytes   int64
	Percent float64
	Off     bool
}

// Need is the free space to keep on a disk of total bytes.
func (r Reserve) Need(total uint64) uint64 {
	switch {
	case r.Off:
		return 0
	case r.Percent > 0:
		return uint64(float64(total) * r.Percent / 100)
	case r.Bytes > 0:
		return uint64(r.Bytes)
	}
	return max(DefaultMinBytes, uint64(float64(total)*DefaultPercent/100))
}

// String describes the reserve as the configuration sets it.
func (r Reserve) String() string {
	switch {
	case r.Off:
		return "off"
	case r.Percent > 0:
		return fmt.Sprintf("%g%% of the disk", r.Percent)
	case r.Bytes > 0:
		return formatBytes(uint64(r.Bytes))
	}
	return fmt.Sprintf("the default, the larger of %s and %g%% of the disk", formatBytes(DefaultMinBytes), DefaultPercent)
}

// Usage is what statfs says of a filesystem: the bytes an unprivileged writer may still
// use (f_bavail, what a full disk leaves the sessions' images) and its size.
type Usage struct {
	Free, Total uint64
}

// Statfs reads the usage of the filesystem holding path.
func Statfs(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, err
	}
	return Usage{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)}, nil
}

// LowError is the refusal of an execution while the disk is below its reserve.
type LowError struct {
	Usage
	Need uint64
}

func (e *LowError) Error() string {
	return fmt.Sprintf("%v: %s free of %s, below the reserve of %s (host.min_free_disk) kept so that the sessions' files and the database are not lost to a full disk; retry once an operator has freed space",
		ErrLow, formatBytes(e.Free), formatBytes(e.Total), formatBytes(e.Need))
}

// Unwrap makes errors.Is(err, ErrLow) hold.
func (e *LowError) Unwrap() error { return ErrLow }

// logEvery bounds the warn lines while the disk stays below its reserve: one when it
// goes below, then at most one this often (with the executions refused since), and one
// when it is back above.
const logEvery = time.Minute

// Guard checks the free space of the filesystem holding Dir against Reserve.
type Guard struct {
	// Dir is the data_dir.
	Dir     string
	Reserve Reserve
	Logger  hclog.Logger
	// Statfs reads the filesystem's usage; Statfs when nil (tests inject another).
	Statfs func(path string) (Usage, error)
	// Now is time.Now when nil.
	Now func() time.Time

	mu      sync.Mutex
	low     bool
	logged  time.Time // the last warn line
	refused int       // executions refused since the last warn line
	failed  bool      // the last statfs failed (logged once)
}

// Status is the disk's state as GET /v1/health shows it.
type Status struct {
	// Healthy is false while the free space is below the reserve (executions are refused).
	Healthy bool `json:"healthy"`
	// FreeBytes is what the filesystem of data_dir has free for unprivileged writers.
	FreeBytes uint64 `json:"free_bytes,omitempty"`
	// TotalBytes is that filesystem's size.
	TotalBytes uint64 `json:"total_bytes,omitempty"`
	// MinFreeBytes is the reserve (host.min_free_disk) executions are refused below; 0 when
	// the check is off. The figures are left out of the health answer of a caller without
	// an operator's token.
	MinFreeBytes uint64 `json:"min_free_bytes,omitempty"`
	// Detail says why the disk is unhealthy, or that it cannot be measured.
	Detail string `json:"detail,omitempty"`
}

func (g *Guard) usage() (Usage, error) {
	if g.Statfs != nil {
		return g.Statfs(g.Dir)
	}
	return Statfs(g.Dir)
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Guard) logger() hclog.Logger {
	if g.Logger == nil {
		return hclog.NewNullLogger()
	}
	return g.Logger
}

// measure reads the disk's usage and the reserve, and records whether it is below: the
// transitions are logged at warn level. A disk that cannot be measured counts as not
// low: the host does not stop running code for want of a number, and says so once.
func (g *Guard) measure() (Usage, uint64, bool, error) {
	u, err := g.usage()
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if !g.failed {
			g.failed = true
			g.logger().Warn("cannot measure the free space of the data_dir's disk; executions are not refused for a full disk", "data_dir", g.Dir, "error", err)
		}
		return Usage{}, 0, false, err
	}
	g.failed = false
	need := g.Reserve.Need(u.Total)
	low := u.Free < need
	switch {
	case low && !g.low:
		g.low, g.logged, g.refused = true, g.now(), 0
		g.logger().Warn("the data_dir's disk is nearly full: executions are refused until space is freed",
			"data_dir", g.Dir, "free_bytes", u.Free, "total_bytes", u.Total, "min_free_bytes", need, "min_free_disk", g.Reserve.String())
	case !low && g.low:
		g.low = false
		g.logger().Warn("the data_dir's disk has room again: executions run", "data_dir", g.Dir, "free_bytes", u.Free,
			"min_free_bytes", need, "refused", g.refused)
		g.refused = 0
	}
	return u, need, low, nil
}

// Check returns a *LowError while the disk's free space is below the reserve, nil
// otherwise (also when the reserve is off or the disk cannot be measured). The caller
// refuses the execution it was about to start; the refusals are counted in the warn line
// written at most once a minute while the disk stays low.
func (g *Guard) Check() error {
	if g == nil || g.Reserve.Off {
		return nil
	}
	u, need, low, err := g.measure()
	if err != nil || !low {
		return nil
	}
	g.mu.Lock()
	g.refused++
	if now := g.now(); now.Sub(g.logged) >= logEvery {
		g.logger().Warn("the data_dir's disk is still nearly full: executions are refused", "data_dir", g.Dir,
			"free_bytes", u.Free, "min_free_bytes", need, "refused", g.refused)
		g.logged, g.refused = now, 0
	}
	g.mu.Unlock()
	return &LowError{Usage: u, Need: need}
}

// Status measures the disk for the health answer.
func (g *Guard) Status() *Status {
	if g == nil {
		return nil
	}
	u, need, low, err := g.measure()
	if err != nil {
		return &Status{Healthy: true, Detail: "the free space of the data_dir's disk cannot be measured: " + err.Error()}
	}
	st := &Status{Healthy: !low, FreeBytes: u.Free, TotalBytes: u.Total, MinFreeBytes: need}
	if low {
		st.Detail = fmt.Sprintf("%s: %s free, below the reserve of %s (host.min_free_disk); executions are refused until space is freed",
			ErrLow, formatBytes(u.Free), formatBytes(need))
	}
	return st
}

// formatBytes writes n in the largest binary unit that keeps a whole or one-decimal number.
func formatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// Room reports the free space of the data_dir's disk and the reserve (host.min_free_disk)
// below which executions are refused, without recording or logging anything: for work
// that writes to the disk and must stop short of the reserve (a backup's copy). ok is
// false when the reserve is off or the disk cannot be measured.
func (g *Guard) Room() (free, reserve uint64, ok bool) {
	if g == nil || g.Reserve.Off {
		return 0, 0, false
	}
	u, err := g.usage()
	if err != nil {
		return 0, 0, false
	}
	return u.Free, g.Reserve.Need(u.Total), true
}
