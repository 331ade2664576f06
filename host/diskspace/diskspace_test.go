package diskspace

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
)

func TestReserveNeed(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		r     Reserve
		total uint64
		want  uint64
	}{
		// The default: 256 MiB on a small disk, 2 % on a large one.
		{Reserve{}, 40 << 20, 256 << 20},
		{Reserve{}, 100 * gib, 2 * gib},
		{Reserve{Bytes: 512 << 20}, 100 * gib, 512 << 20},
		{Reserve{Percent: 5}, 100 * gib, 5 * gib},
		{Reserve{Off: true}, 100 * gib, 0},
	} {
		if got := tc.r.Need(tc.total); got != tc.want {
			t.Errorf("%+v.Need(%d) = %d, want %d", tc.r, tc.total, got, tc.want)
		}
	}
}

// fakeDisk is an injected statfs whose free space the test sets.
type fakeDisk struct {
	mu          sync.Mutex
	free, total uint64
	err         error
}

func (f *fakeDisk) statfs(string) (Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Usage{Free: f.free, Total: f.total}, f.err
}

func (f *fakeDisk) set(free uint64) {
	f.mu.Lock()
	f.free = free
	f.mu.Unlock()
}

// TestGuardRefusesBelowReserve: below the reserve Check refuses with a *LowError (ErrLow)
// saying how much is free, and the health status is unhealthy with the free bytes; the
// warn lines come when the disk goes low, at most once a minute while it stays low (with
// the count of refusals), and when it has room again.
func TestGuardRefusesBelowReserve(t *testing.T) {
	disk := &fakeDisk{free: 1 << 30, total: 10 << 30}
	var logs syncbuf.Buffer
	now := time.Unix(1000, 0)
	g := &Guard{Dir: "/data", Reserve: Reserve{Bytes: 512 << 20}, Statfs: disk.statfs,
		Logger: hclog.New(&hclog.LoggerOptions{Output: &logs}), Now: func() time.Time { return now }}
	if err := g.Check(); err != nil {
		t.Fatalf("1 GiB free, reserve 512 MiB: %v", err)
	}
	if st := g.Status(); !st.Healthy || st.FreeBytes != 1<<30 || st.MinFreeBytes != 512<<20 || st.Detail != "" {
		t.Fatalf("status %+v", st)
	}

	disk.set(100 << 20)
	for i := 0; i < 5; i++ {
		err := g.Check()
		var low *LowError
		if !errors.As(err, &low) || !errors.Is(err, ErrLow) || low.Free != 100<<20 || low.Need != 512<<20 ||
			!strings.Contains(err.Error(), "100.0 MiB free") || !strings.Contains(err.Error(), "min_free_disk") {
			t.Fatalf("100 MiB free: %v", err)
		}
	}
	st := g.Status()
	if st.Healthy || st.FreeBytes != 100<<20 || !strings.Contains(st.Detail, "nearly full") {
		t.Fatalf("status %+v", st)
	}
	if n := strings.Count(logs.String(), "nearly full"); n != 1 {
		t.Fatalf("%d warn lines for 5 refusals within a minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(logEvery)
	_ = g.Check()
	if !strings.Contains(logs.String(), "still nearly full") || !strings.Contains(logs.String(), "refused=6") {
		t.Fatalf("no warn line a minute on, with the refusals counted:\n%s", logs.String())
	}

	disk.set(2 << 30)
	if err := g.Check(); err != nil {
		t.Fatalf("space freed: %v", err)
	}
	if !strings.Contains(logs.String(), "has room again") || !strings.Contains(logs.String(), "[WARN]") {
		t.Fatalf("no warn line when space came back:\n%s", logs.String())
	}
	if st := g.Status(); !st.Healthy {
		t.Fatalf("status %+v", st)
	}
}

// TestGuardOffOrUnmeasured: with the reserve off, or a disk statfs cannot read, nothing is
// refused; the failure to measure is logged once and shown in the status.
func TestGuardOffOrUnmeasured(t *testing.T) {
	disk := &fakeDisk{free: 0, total: 10 << 30}
	g := &Guard{Dir: "/data", Reserve: Reserve{Off: true}, Statfs: disk.statfs}
	if err := g.Check(); err != nil {
		t.Fatalf("reserve off: %v", err)
	}
	var logs syncbuf.Buffer
	disk.err = errors.New("input/output error")
	g = &Guard{Dir: "/data", Statfs: disk.statfs, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})}
	for i := 0; i < 3; i++ {
		if err := g.Check(); err != nil {
			t.Fatalf("statfs failing: %v", err)
		}
	}
	if st := g.Status(); !st.Healthy || !strings.Contains(st.Detail, "input/output error") {
		t.Fatalf("status %+v", st)
	}
	if n := strings.Count(logs.String(), "cannot measure"); n != 1 {
		t.Fatalf("%d warn lines, want 1:\n%s", n, logs.String())
	}
	var nilGuard *Guard
	if nilGuard.Check() != nil || nilGuard.Status() != nil {
		t.Fatal("a nil guard refuses")
	}
}

// TestStatfs reads a real filesystem.
func TestStatfs(t *testing.T) {
	u, err := Statfs(t.TempDir())
	if err != nil || u.Total == 0 || u.Free > u.Total {
		t.Fatalf("Statfs = %+v, %v", u, err)
	}
}
