package daemon

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
)

// TestStalePluginVersionWarned: a first-party plugin binary reports the version limitd was
// built with (the Makefile stamps both); one of another build, left in plugin_dir, is
// logged at WARN with both versions, and one of this build is not.
func TestStalePluginVersionWarned(t *testing.T) {
	prepareLogs := func(pluginDir string) string {
		t.Helper()
		var logs syncbuf.Buffer
		logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
		cfg := parse(t, fmt.Sprintf("host {\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", t.TempDir()))
		if _, diags := Prepare(context.Background(), cfg, pluginDir, t.TempDir(), logger); diags.HasErrors() {
			t.Fatal(diags)
		}
		return logs.String()
	}
	testbin.Plugin(t, "storage-bolt")
	if logs := prepareLogs(testbin.PluginDir(t)); strings.Contains(logs, "WARN") {
		t.Fatalf("a plugin of limitd's build warned:\n%s", logs)
	}

	old := t.TempDir()
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/limitgraph/limit/host/version.Version=0.0.9-old",
		"-o", filepath.Join(old, "limit-storage-bolt"), "github.com/limitgraph/limit/plugins/storage-bolt")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logs := prepareLogs(old)
	want := "[WARN]  a first-party plugin binary is not of this limitd's build: it may be left over from another version in plugin_dir; rebuild the plugins with limitd (make build): plugin=storage.bolt path=" +
		filepath.Join(old, "limit-storage-bolt") + " plugin_version=0.0.9-old limitd_version=" + version.Version
	if !strings.Contains(logs, want) {
		t.Fatalf("logs do not say %q:\n%s", want, logs)
	}
}
