package base

import (
	"errors"
	"slices"
	"strings"
	"testing"

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
