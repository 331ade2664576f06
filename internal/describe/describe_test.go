package describe

import "testing"

func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{16777216.0, "16777216"},
		{0.5, "0.5"},
		{1e22, "1e+22"},
		{"10", `the string "10"`},
		{true, "true"},
		{nil, "null"},
		{[]any{1.0}, "a list"},
		{map[string]any{}, "an object"},
	} {
		if got := JSON(tc.v); got != tc.want {
			t.Errorf("JSON(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
