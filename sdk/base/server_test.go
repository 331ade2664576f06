package base

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func panicky() (err error) {
	defer Recover(&err)
	var m map[string]int
	m["x"]++
	return nil
}

// TestRecoverLogsStack: a recovered panic becomes an Internal error and is logged with the
// stack that points at the plugin's code, so its author can find it.
func TestRecoverLogsStack(t *testing.T) {
	var buf bytes.Buffer
	l := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true})
	panicLogger.Store(&l)
	defer panicLogger.Store(nil)
	err := panicky()
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "plugin panic: assignment to entry in nil map") {
		t.Fatalf("err = %v", err)
	}
	if out := buf.String(); !strings.Contains(out, `"plugin panic"`) || !strings.Contains(out, "base.panicky") {
		t.Fatalf("log lacks the panic's stack:\n%s", out)
	}
}
