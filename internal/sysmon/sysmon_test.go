package sysmon

import (
	"slices"
	"testing"
)

func TestWithSetting(t *testing.T) {
	for _, tc := range []struct {
		env, want []string
	}{
		{nil, []string{"GODEBUG=a=1"}},
		{[]string{"X=1"}, []string{"X=1", "GODEBUG=a=1"}},
		// A GODEBUG already set comes after: the runtime takes the last value of a key.
		{[]string{"GODEBUG=a=0,b=2", "X=1"}, []string{"GODEBUG=a=1,a=0,b=2", "X=1"}},
		{[]string{"GODEBUG="}, []string{"GODEBUG=a=1"}},
	} {
		in := slices.Clone(tc.env)
		if got := WithSetting(tc.env, "a=1"); !slices.Equal(got, tc.want) {
			t.Errorf("WithSetting(%q) = %q, want %q", tc.env, got, tc.want)
		}
		if !slices.Equal(in, tc.env) {
			t.Errorf("WithSetting changed its argument: %q, was %q", tc.env, in)
		}
	}
}
