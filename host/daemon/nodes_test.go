package daemon

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestLogSharedStorage: the start names the other hosts sharing the storage, apart by
// whether their key is this host's, one it trusts or another, and says that those with another key cannot have
// their traces verified here; alone, it says nothing.
func TestLogSharedStorage(t *testing.T) {
	var buf bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	logSharedStorage(logger, map[string]string{"vm-a": "k1"}, "vm-a", "k1", nil)
	if buf.Len() != 0 {
		t.Fatalf("alone on the storage, the start says: %s", buf.String())
	}
	logSharedStorage(logger, map[string]string{"vm-a": "k1", "vm-b": "k2", "vm-c": "k1", "vm-d": "k2", "vm-e": "k3"}, "vm-a", "k1", map[string]bool{"k3": true})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 ||
		!strings.Contains(lines[0], "[INFO]") || !strings.Contains(lines[0], "sign with this host's provenance key") || !strings.Contains(lines[0], `nodes=["vm-c"]`) ||
		!strings.Contains(lines[1], "[INFO]") || !strings.Contains(lines[1], "keys this host trusts") || !strings.Contains(lines[1], `nodes=["vm-e"]`) ||
		!strings.Contains(lines[2], "[INFO]") || !strings.Contains(lines[2], "this host cannot verify their traces") ||
		!strings.Contains(lines[2], `nodes=["vm-b", "vm-d"]`) || !strings.Contains(lines[2], `"vm-b=k2"`) {
		t.Fatalf("log lines:\n%s", buf.String())
	}
}
