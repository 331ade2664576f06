package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/config"
)

// TestBodyErrors: a body that is not one JSON object, or a field of the wrong type, gets
// 400 in JSON's terms, never Go's type names.
func TestBodyErrors(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, c := range []struct{ body, want string }{
		{`null`, "request body must be a JSON object"},
		{` [1, 2]`, "request body must be a JSON object"},
		{`"x"`, "request body must be a JSON object"},
		{`{"max_concurrency": "many"}`, `field "max_concurrency" must be a whole number, got JSON string`},
		{`{"name": 5}`, `field "name" must be a string, got JSON number`},
		{`{"runners": "python"}`, `field "runners" must be a JSON array, got JSON string`},
		{`{"name": "a", "policy": "strict", "name": "b"}`, `field "name" is given more than once`},
		{`{"name": "a", "NAME": "b"}`, `field "NAME" is given more than once`},
	} {
		code, body := post(t, s, "/v1/sessions", c.body)
		detail := fmt.Sprint(body["detail"])
		if code != 400 || !strings.Contains(detail, c.want) {
			t.Errorf("%s: %d %q, want 400 %q", c.body, code, detail, c.want)
		}
		for _, goName := range []string{"uint64", "session.", "interface {}", "[]string"} {
			if strings.Contains(detail, goName) {
				t.Errorf("%s: detail %q names a Go type", c.body, detail)
			}
		}
	}
	res, body := do(t, s, "GET", "/v1/sessions?include_deleted=maybe")
	if res.StatusCode != 400 || !strings.Contains(fmt.Sprint(body["detail"]), "include_deleted must be true or false") {
		t.Errorf("include_deleted=maybe: %d %v", res.StatusCode, body)
	}
	if res, body := do(t, s, "GET", "/v1/sessions?include_deleted=true"); res.StatusCode != 200 {
		t.Errorf("include_deleted=true: %d %v", res.StatusCode, body)
	}
}
