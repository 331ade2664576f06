package plugins

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/base"
)

// TestUnavailableWhileProcessLost: the pre-run check of executions (Unavailable) says the
// storage cannot take calls while its process is lost and its restarts fail (its binary
// gone), though its backend said nothing of the kind: code must not run that cannot be
// recorded. A crash whose restart works is waited for instead.
func TestUnavailableWhileProcessLost(t *testing.T) {
	old := ReadyWait
	ReadyWait = 30 * time.Second // long enough for any restart; a failing one answers at once
	t.Cleanup(func() { ReadyWait = old })

	spec := testSpec(base.KindStorage, "once", "memstore-once")
	spec.Env[onceMarkerEnv] = filepath.Join(t.TempDir(), "started")
	m, err := StartManaged(context.Background(), spec, hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if why := m.Unavailable(); why != "" {
		t.Fatalf("a running storage is unavailable: %s", why)
	}
	if err := syscall.Kill(m.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Once the host knows the process is gone (a call just before may still pass, as one
	// made just before the crash would).
	waitStatus(t, m, func(s Status) bool { return !s.Healthy })
	start := time.Now()
	why := m.Unavailable()
	if why == "" || !strings.Contains(why, "storage.once") {
		t.Fatalf("unavailable = %q, want why the lost storage cannot take calls", why)
	}
	if time.Since(start) >= ReadyWait {
		t.Errorf("the check waited out ReadyWait (%s) while the restarts fail: %s", ReadyWait, why)
	}

	plain, err := StartManaged(context.Background(), testSpec(base.KindStorage, "mem", "memstore"), hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pid := plain.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, plain, func(s Status) bool { return !s.Healthy || s.PID != pid })
	if why := plain.Unavailable(); why != "" {
		t.Fatalf("a storage whose restart works is unavailable: %s", why)
	}
	if s := plain.Status(); s.PID == pid || s.Restarts != 1 {
		t.Errorf("status after the wait = %+v (old pid %d), want the restarted process", s, pid)
	}
}
