package base

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/sysmon"
)

// TestLaunchGODEBUG checks which plugins start with sysmon.Setting: storage plugins, not
// runners (one process per session) nor rules.
func TestLaunchGODEBUG(t *testing.T) {
	for kind, want := range map[string][]string{
		KindStorage:    {"A=1", "GODEBUG=" + sysmon.Setting},
		KindRunner:     {"A=1"},
		KindGovernance: {"A=1"},
	} {
		_, cmd := NewClientCmd(LaunchConfig{Path: "/bin/true", Kind: kind, Env: []string{"A=1"}})
		if !slices.Equal(cmd.Env, want) {
			t.Errorf("%s plugin's environment %q, want %q", kind, cmd.Env, want)
		}
	}
}

// TestStartError: go-plugin's start errors come without its generic list of causes,
// with what went wrong and what to do.
func TestStartError(t *testing.T) {
	const boilerplate = "\nThis usually means\n  the plugin was not compiled for this architecture,\n\nAdditional notes about plugin:\n  Path: /x\n"
	for _, c := range []struct {
		goPlugin, want string
	}{
		{"Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout" + boilerplate,
			"the plugin process closed its stdout before the plugin handshake, having written nothing to stdout: not a LIMIT plugin"},
		{"Unrecognized remote plugin message: hello" + boilerplate,
			`the plugin wrote "hello" to stdout instead of the handshake (a plugin must write nothing to stdout before it serves`},
		{"Unrecognized remote plugin message: " + boilerplate,
			"the plugin wrote an empty line to stdout instead of the handshake"},
		{"timeout while waiting for plugin to start", "timeout while waiting for plugin to start (the plugin did not serve within its start timeout"},
		{"incompatible API version with plugin. Plugin version: 99, Client versions: [1]",
			"incompatible API version with plugin. Plugin version: 99, Client versions: [1] (the plugin was built against a LIMIT SDK of another protocol version: rebuild it against the SDK of this host's version)"},
		{"something else", "something else"},
	} {
		got := startError(errors.New(c.goPlugin)).Error()
		if !strings.HasPrefix(got, c.want) || strings.Contains(got, "This usually means") {
			t.Errorf("%q: got %q, want it to begin %q", c.goPlugin, got, c.want)
		}
	}
	var nh *NoHandshakeError
	if !errors.As(startError(errors.New("Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout")), &nh) {
		t.Error("an empty stdout is no *NoHandshakeError")
	}
}

// TestStrayOutputReassemblesLines: go-plugin carries a plugin's stray output in chunks of
// 1 KiB cut anywhere; each line is logged once, whole, when its newline comes, and a line
// that never gets one is logged once nothing more comes.
func TestStrayOutputReassemblesLines(t *testing.T) {
	var logs syncbuf.Buffer
	w := &strayOutput{logger: hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true}), stream: "stderr"}
	long := strings.Repeat("x", 3000)
	out := []byte(long + "\nshort one\r\nshort two\n\nprompt> ")
	for chunk := range slices.Chunk(out, 1024) {
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	var lines []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lines = lines[:0]
		for l := range strings.Lines(logs.String()) {
			var entry struct {
				Msg    string `json:"@message"`
				Stream string `json:"stream"`
				Line   string `json:"line"`
			}
			if err := json.Unmarshal([]byte(l), &entry); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if entry.Msg != "plugin output outside its logger" || entry.Stream != "stderr" {
				t.Fatalf("log entry %.200q", l)
			}
			lines = append(lines, entry.Line)
		}
		if len(lines) == 4 || time.Now().After(deadline) {
			break
		}
	}
	if want := []string{long, "short one", "short two", "prompt> "}; !slices.Equal(lines, want) {
		t.Fatalf("logged lines %.100q, want %.100q", lines, want)
	}
}
