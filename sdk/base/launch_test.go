package base

import (
	"slices"
	"testing"
)

func TestWithGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		env, want []string
	}{
		{nil, []string{"GODEBUG=a=1"}},
		{[]string{"X=1"}, []string{"X=1", "GODEBUG=a=1"}},
		// A configured GODEBUG comes after: the runtime takes the last value of a key.
		{[]string{"GODEBUG=a=0,b=2", "X=1"}, []string{"GODEBUG=a=1,a=0,b=2", "X=1"}},
		{[]string{"GODEBUG="}, []string{"GODEBUG=a=1"}},
	} {
		in := slices.Clone(tc.env)
		if got := withGODEBUG(tc.env, "a=1"); !slices.Equal(got, tc.want) {
			t.Errorf("withGODEBUG(%q) = %q, want %q", tc.env, got, tc.want)
		}
		if !slices.Equal(in, tc.env) {
			t.Errorf("withGODEBUG changed its argument: %q, was %q", tc.env, in)
		}
	}
}

// TestLaunchGODEBUG checks which plugins start with storageGODEBUG: storage plugins, not
// runners (one process per session) nor rules.
func TestLaunchGODEBUG(t *testing.T) {
	for kind, want := range map[string][]string{
		KindStorage:    {"A=1", "GODEBUG=" + storageGODEBUG},
		KindRunner:     {"A=1"},
		KindGovernance: {"A=1"},
	} {
		_, cmd := NewClientCmd(LaunchConfig{Path: "/bin/true", Kind: kind, Env: []string{"A=1"}})
		if !slices.Equal(cmd.Env, want) {
			t.Errorf("%s plugin's environment %q, want %q", kind, cmd.Env, want)
		}
	}
}
