package plugins

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestRelayedLinesHaveNoRepeatedKeys: a line a session's runner process logs comes out
// once in the host's log with each key once: not the session the host's logger names
// already, nor go-plugin's second timestamp, nor the plugin's own module; in text and in
// JSON.
func TestRelayedLinesHaveNoRepeatedKeys(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			var logs syncbuf.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Name: "limitd", Output: &logs, Level: hclog.Info, JSONFormat: format == "json"})
			rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, logger.Named("runner"))
			defer rs.Close(ctx)
			if _, err := rs.Get(ctx, runner.Session{ID: "S1"}, "echo"); err != nil {
				t.Fatal(err)
			}
			var line string
			for deadline := time.Now().Add(10 * time.Second); line == ""; time.Sleep(10 * time.Millisecond) {
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, "session opened") {
						line = l
					}
				}
				if line == "" && time.Now().After(deadline) {
					t.Fatalf("no relayed line:\n%s", logs.String())
				}
			}
			if format == "text" {
				for key, want := range map[string]int{"session=S1": 1, "greeting=hi": 1, "timestamp=": 0, "@module=": 0} {
					if n := strings.Count(line, key); n != want {
						t.Errorf("%q appears %d times in %q, want %d", key, n, line, want)
					}
				}
				return
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if m["session"] != "S1" || m["greeting"] != "hi" || m["timestamp"] != nil || !strings.HasPrefix(m["@module"].(string), "limitd.runner.") {
				t.Errorf("relayed line %q", line)
			}
		})
	}
}

// TestFailedStartLogsNoKillWarning: a plugin process that exits before its handshake (a
// failed start, a failed restart attempt) is not reported as having "failed to exit
// gracefully": it was never asked to, nor killed.
func TestFailedStartLogsNoKillWarning(t *testing.T) {
	var logs syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: &logs, Level: hclog.Debug})
	spec := testSpec(base.KindStorage, "stderr-exit", "stderr-exit")
	if _, err := Launch(context.Background(), spec, logger); err == nil {
		t.Fatal("the start succeeded")
	}
	out := logs.String()
	if !strings.Contains(out, "plugin process exited") {
		t.Fatalf("go-plugin did not report the exit:\n%s", out)
	}
	if strings.Contains(out, "[WARN]") {
		t.Fatalf("a WARN for a process that had exited:\n%s", out)
	}
}
