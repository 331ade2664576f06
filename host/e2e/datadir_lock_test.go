package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestSecondDaemonOnDataDir: a second limitd process on a data_dir in use exits at once
// with status 1, naming the first one's pid, and leaves the first serving; once the first
// is killed (SIGKILL: the kernel drops its lock), a new one starts on the same data_dir,
// under the same node id, with the sessions it left.
func TestSecondDaemonOnDataDir(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n  plugin_dir = %q\n}\nstorage \"bolt\" {}\n", dir, testbin.PluginDir(t)))
	first := start(t, cfg)
	s, err := first.c.CreateSession(ctx, client.CreateSessionRequest{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, testbin.Command(t, "limitd"), "-config", cfg)
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second limitd: %v, want exit status 1\n%s", err, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "data_dir is in use by another limitd (pid "+strconv.Itoa(first.cmd.Process.Pid)) || !strings.Contains(out, "limit.hcl:3") {
		t.Errorf("second limitd's error:\n%s", out)
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("the second limitd took %v to give up: the lock is checked before plugins start", el)
	}
	if _, err := first.c.GetSession(ctx, s.ID); err != nil {
		t.Errorf("the first limitd after the refusal: %v", err)
	}

	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	again := start(t, cfg)
	got, err := again.c.GetSession(ctx, s.ID)
	if err != nil {
		t.Fatalf("session after the restart: %v", err)
	}
	if got.OwnerNode != s.OwnerNode || s.OwnerNode == "" {
		t.Errorf("owner_node %q after the restart, %q before: the node id is kept in data_dir", got.OwnerNode, s.OwnerNode)
	}
}
