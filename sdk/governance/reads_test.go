package governance

import "testing"

func TestReads(t *testing.T) {
	py := RuleDescription{ContentTypes: []string{"code/python", "text/x-python"}, Runners: []string{"python"}}
	text := RuleDescription{ContentTypes: []string{"text/plain", "text/prompt"}}
	for _, c := range []struct {
		d             RuleDescription
		ctype, runner string
		want          bool
	}{
		{RuleDescription{}, "anything/at-all", "x", true},
		{py, "code/python", "", true},
		{py, "  CODE/Python ; charset=utf-8", "", true},
		{py, "text/x-python", "node", true},
		{py, "text/prompt", "python", true},
		{py, "", "", true},
		{py, ";charset=utf-8", "", true},
		{py, "text/prompt", "", false},
		{py, "text/prompt", "pythonista", false},
		{py, "code/python3", "", false},
		{text, "text/prompt", "python", true},
		{text, "text/output", "python", false},
		{text, "text/plainer", "", false},
	} {
		if got := c.d.Reads(EvaluateRequest{ContentType: c.ctype, Runner: c.runner}); got != c.want {
			t.Errorf("%+v reads content type %q from runner %q: %v, want %v", c.d, c.ctype, c.runner, got, c.want)
		}
	}
}
