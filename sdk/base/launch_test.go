package base

import (
	"slices"
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
