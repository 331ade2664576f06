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
		{`{"name": "a", "limits": {"memory_bytes": 1, "memory_bytes": 2}}`, `field "limits.memory_bytes" is given more than once`},
		{`{"runners": ["python"], "limits": {"x": [{"a": 1}, {"b": 1, "b": 2}]}}`, `field "limits.x[1].b" is given more than once`},
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

// TestNestedDuplicates: a field given twice anywhere in a body is refused with its path;
// nested keys that differ only in case are distinct (free-form data keeps both).
func TestNestedDuplicates(t *testing.T) {
	for _, c := range []struct {
		body, path string
		dup        bool
	}{
		{`{"data": {"k": 1, "k": 2}}`, "data.k", true},
		{`{"data": {"k": 1, "K": 2}}`, "", false},
		{`{"a": [[{"x": 1}], [{"y": {"z": 1, "z": 1}}]]}`, "a[1][0].y.z", true},
		{`{"a": {"b": 1}, "c": {"b": 1}}`, "", false},
		{`{"a": "{\"k\":1,\"k\":2}"}`, "", false},
		{`{"a": {"k": 1,, "j": 2}}`, "", false}, // malformed: the decoder reports it
		{`{"a": {"k": 1, "\u006b": 2}}`, "a.k", true},
		{`{"a": {"k\"": 1, "k": 2, "k\\": 3, "\\u006b": 4}}`, "", false},
		{strings.Repeat("[", 20000) + strings.Repeat("]", 20000), "", false},
	} {
		path, dup, _ := scanBody([]byte(c.body), nil)
		if dup != c.dup || path != c.path {
			t.Errorf("%.60s: %q %v, want %q %v", c.body, path, dup, c.path, c.dup)
		}
	}
}

// TestScanBodyCounts: the values of a bounded top-level field are counted exactly (each
// object, array, string, number and literal once, keys not), and a field over its bound
// is named before anything is decoded.
func TestScanBodyCounts(t *testing.T) {
	for _, c := range []struct {
		body  string
		bound int
		over  bool
	}{
		{`{"params": {"a": [1, -2.5e3, "x,]}", true, null, {"b": false}]}}`, 9, false},
		{`{"params": {"a": [1, -2.5e3, "x,]}", true, null, {"b": false}]}}`, 8, true},
		{`{"PARAMS": [1,2,3]}`, 3, true},
		{`{"params": [1,2,3]}`, 4, false},
		{`{"params": "one long string with [brackets], {braces} and 1, 2, 3"}`, 1, false},
		{`{"input": [1,2,3,4,5,6], "params": {}}`, 1, false},
		{`{"params": {}, "input": [1,2,3,4,5,6]}`, 1, false},
		{` { "params" : [ 1 , 2 ] } `, 2, true},
	} {
		_, _, over := scanBody([]byte(c.body), map[string]int{"params": c.bound})
		if (over != "") != c.over {
			t.Errorf("%s with bound %d: over %q, want %v", c.body, c.bound, over, c.over)
		}
	}
}
