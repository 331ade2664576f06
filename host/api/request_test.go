package api

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/execution"
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
		// encoding/json matches names without case, and takes "ſ" (a long s) and "K" (the
		// Kelvin sign) for s and k: the API matches them exactly.
		{`{"name": "a", "NAME": "b"}`, `unknown field "NAME"; field names are case-sensitive: did you mean "name"?`},
		{`{"runners": [], "runnerſ": ["python"]}`, `unknown field "runnerſ"; field names are case-sensitive: did you mean "runners"?`},
		{`{"limits": {}, "limit\u017f": {}}`, `unknown field "limitſ"`},
		{`{"name": "a", "limits": {"memory_bytes": 1, "memory_bytes": 2}}`, `field "limits.memory_bytes" is given more than once`},
		{`{"runners": ["python"], "limits": {"x": [{"a": 1}, {"b": 1, "b": 2}]}}`, `unknown field "limits.x"`},
		{`{"name": "a"} {}`, "request body has data after the JSON value"},
		// Not UTF-8: encoding/json put U+FFFD in the name and the session was created.
		{"{\"name\": \"a\xff\"}", "request body is not valid UTF-8 (at byte 11)"},
		{"{\"name\": \"\xc3\x28\"}", "request body is not valid UTF-8 (at byte 10)"},
		{`{"name": "a"}x`, "request body has data after the JSON value"},
		{`{"name": "a"` + "\n\t\r }\n" + `"`, "request body has data after the JSON value"},
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
		// Past 16 names an object's are kept in a set: duplicates are found either side.
		{`{"a": {` + manyKeys(40) + `, "k3": 0}}`, "a.k3", true},
		{`{"a": {` + manyKeys(40) + `, "k39": 0}}`, "a.k39", true},
		{`{"a": {` + manyKeys(16) + `, "k15": 0}}`, "a.k15", true},
		{`{"a": {` + manyKeys(40) + `}, "b": {` + manyKeys(40) + `}}`, "", false},
	} {
		_, err := scanBody([]byte(c.body), nil, nil)
		want := ""
		if c.dup {
			want = fmt.Sprintf("field %q is given more than once", c.path)
		}
		if fmt.Sprint(err) != fmt.Sprint(want) && !(err == nil && want == "") {
			t.Errorf("%.60s: %v, want %q", c.body, err, want)
		}
	}
}

// TestFieldNamesExact: a member name matches a struct field's only exactly, at the top
// level and in a member that decodes into a struct (a session's limits), and a miscased one
// is refused naming the field it meant; a map's keys (data, params) stay free.
func TestFieldNamesExact(t *testing.T) {
	type limits struct {
		MemoryBytes uint64 `json:"memory_bytes"`
	}
	type embedded struct {
		Method string `json:"method"`
	}
	var v struct {
		Limits  limits          `json:"limits"`
		Ptr     *limits         `json:"ptr"`
		Data    map[string]any  `json:"data"`
		Raw     json.RawMessage `json:"raw"`
		Skipped limits          `json:"-"`
		embedded
	}
	for _, c := range []struct{ body, err string }{
		{`{"limits": {"memory_bytes": 1, "MEMORY_BYTES": 2}}`, `unknown field "limits.MEMORY_BYTES"; field names are case-sensitive: did you mean "limits.memory_bytes"?`},
		{`{"limits": {"memory_byteſ": 2}}`, `unknown field "limits.memory_byteſ"; field names are case-sensitive: did you mean "limits.memory_bytes"?`},
		{`{"Limits": {}}`, `unknown field "Limits"; field names are case-sensitive: did you mean "limits"?`},
		{`{"ptr": {"Memory_Bytes": 2}}`, `unknown field "ptr.Memory_Bytes"; field names are case-sensitive: did you mean "ptr.memory_bytes"?`},
		{`{"limits": {"x": 1}}`, `unknown field "limits.x"`},
		{`{"Skipped": {}}`, `unknown field "Skipped"`},
		{`{"METHOD": "x"}`, `unknown field "METHOD"; field names are case-sensitive: did you mean "method"?`},
		{`{"data": {"k": 1, "K": 2}, "raw": {"k": 1, "K": 2}}`, ""},
		{`{"limits": {"memory_bytes": 67108864}, "ptr": {"memory_bytes": 1}, "method": "m"}`, ""},
	} {
		err := decodeBody([]byte(c.body), &v, nil)
		if fmt.Sprint(err) != c.err && !(err == nil && c.err == "") {
			t.Errorf("%s: %v, want %q", c.body, err, c.err)
		}
	}
}

// TestFoldNameASCII: the ASCII fast path of foldName folds each character as Unicode
// simple folding does (K and S included, whose orbits hold the Kelvin sign and a long s).
func TestFoldNameASCII(t *testing.T) {
	for c := rune(0); c < utf8.RuneSelf; c++ {
		want := c
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			want = min(want, f)
		}
		if got := foldName(string(c)); got != string(want) {
			t.Errorf("foldName(%q) = %q, want %q", c, got, want)
		}
		if foldName(string(c)+"ſ") != foldName(string(c))+"S" {
			t.Errorf("foldName(%q) differs from the general path", string(c)+"ſ")
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
		{`{"params": [1,2,3]}`, 4, false},
		{`{"params": "one long string with [brackets], {braces} and 1, 2, 3"}`, 1, false},
		{`{"input": [1,2,3,4,5,6], "params": {}}`, 1, false},
		{`{"params": {}, "input": [1,2,3,4,5,6]}`, 1, false},
		{` { "params" : [ 1 , 2 ] } `, 2, true},
	} {
		_, err := scanBody([]byte(c.body), map[string]int{"params": c.bound}, nil)
		if over := err != nil && strings.Contains(err.Error(), "JSON values"); over != c.over {
			t.Errorf("%s with bound %d: %v, want over %v", c.body, c.bound, err, c.over)
		}
	}
}

// manyKeys returns n distinct object members "k0": 0, "k1": 0, ...
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: 0", fmt.Sprint("k", i))
	}
	return b.String()
}

// createTraceBodies are bodies of POST /v1/traces, plain and otherwise.
var createTraceBodies = []string{
	`{"session_id":"01KBF3Q6J6W1Y9M8N3V8X2Z4CD","data":{"i":1,"payload":"benchmark trace"}}`,
	` {"data": {"a": [1, 2, {"b": null}], "c": "\"x\""} , "session_id" : "S", "agent": "me"} ` + "\n",
	`{}`, `{ }`, `[]`, `null`, ``, ` `, `{`, `{"data":`, `{"data":{}`, `{"data":{}}}`, `{"data":{}} {}`, `{"data":{}}x`,
	`{"session_id":"a","session_id":"b"}`, `{"session_id":"a","SESSION_ID":"b"}`, `{"Session_Id":"a"}`,
	`{"data":{"k":1,"k":2}}`, `{"data":[{"k":1},{"k":1}]}`, `{"data":null}`, `{"data":nul}`, `{"data":1}`, `{"data":-0.5e3}`,
	`{"data":"x"}`, `{"data":[1,2}`, `{"data":{"a":1,}}`, `{"data":{"a" 1}}`, `{"data":tru}`, `{"data":true,"agent":"x"}`,
	`{"data":01}`, `{"data":1 2}`, `{"data":"\u00e9\ud800"}`, `{"data":{"\u006b":1,"k":2}}`, `{"data":"` + "\x01" + `"}`, `{"data":{"k":"` + "\xff" + `"}}`,
	`{"session_id":null}`, `{"session_id":1}`, `{"session_id":"\u0041"}`, `{"session_id":"é"}`, `{"session_id":"a` + "\xff" + `"}`,
	`{"agent":"a\tb"}`, `{"agent":["x"]}`, `{"extra":1}`, `{"data":{},"extra":1}`, `{"data":{},}`, `{,"data":{}}`,
	`{"data":{}` + "\n\t\r" + `}`, `{"data":{"a":"}"}}`, `{"data":{"a":"\\"}}`, `{"data":["]"]}`, `{"data":[[[]]]}`,
}

// TestDecodeCreateTrace: the body of POST /v1/traces gets the same request, or the same
// error, from decodeCreateTrace as from decodeJSON, and a plain body is read directly.
func TestDecodeCreateTrace(t *testing.T) {
	check := func(t *testing.T, body string) {
		var want, got createTraceRequest
		werr := decodeJSON(httptest.NewRequest("POST", "/v1/traces", strings.NewReader(body)), &want)
		gerr := decodeCreateTrace(httptest.NewRequest("POST", "/v1/traces", strings.NewReader(body)), &got)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || want.SessionID != got.SessionID || want.Agent != got.Agent ||
			string(want.Data) != string(got.Data) || (want.Data == nil) != (got.Data == nil) {
			t.Fatalf("%q:\n got %+v (%s) %v\nwant %+v (%s) %v", body, got, got.Data, gerr, want, want.Data, werr)
		}
	}
	for _, body := range createTraceBodies {
		check(t, body)
	}
	var req createTraceRequest
	if !parseCreateTrace([]byte(createTraceBodies[0]), &req) || !parseCreateTrace([]byte(createTraceBodies[1]), &req) {
		t.Error("a plain body was not read directly")
	}
	// Every prefix of the plain bodies, and each with one byte changed.
	for _, body := range createTraceBodies[:2] {
		for i := range len(body) {
			check(t, body[:i])
			for _, c := range []byte(`{}[]",: \x0ane\\`) {
				check(t, body[:i]+string(c)+body[i+1:])
			}
		}
	}
}

// FuzzDecodeCreateTrace: as TestDecodeCreateTrace, for any body.
func FuzzDecodeCreateTrace(f *testing.F) {
	for _, body := range createTraceBodies {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var want, got createTraceRequest
		werr := decodeJSON(httptest.NewRequest("POST", "/v1/traces", strings.NewReader(body)), &want)
		gerr := decodeCreateTrace(httptest.NewRequest("POST", "/v1/traces", strings.NewReader(body)), &got)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || want.SessionID != got.SessionID || want.Agent != got.Agent ||
			string(want.Data) != string(got.Data) || (want.Data == nil) != (got.Data == nil) {
			t.Fatalf("%q:\n got %+v %v\nwant %+v %v", body, got, gerr, want, werr)
		}
	})
}

// TestWantsStream: an execution streams when Accept names text/event-stream with a weight
// above 0 and no JSON range with a higher one; q=0 means not acceptable (it streamed).
func TestWantsStream(t *testing.T) {
	for _, c := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"application/json"}, false},
		{[]string{"text/event-stream"}, true},
		{[]string{"Text/Event-Stream"}, true},
		{[]string{"text/event-stream;q=0, application/json"}, false},
		{[]string{"text/event-stream; q=0.0"}, false},
		{[]string{"application/json, text/event-stream"}, true},
		{[]string{"*/*, text/event-stream"}, true},
		{[]string{"application/json;q=1, text/event-stream;q=0.5"}, false},
		{[]string{"application/json;q=0.5, text/event-stream"}, true},
		{[]string{"application/json", "text/event-stream"}, true},
		{[]string{"text/event-stream;q=bad"}, true},
	} {
		r := httptest.NewRequest("POST", "/v1/sessions/x/executions", nil)
		for _, a := range c.accept {
			r.Header.Add("Accept", a)
		}
		if got := wantsStream(r); got != c.want {
			t.Errorf("Accept %q: streams %v, want %v", c.accept, got, c.want)
		}
	}
}

// TestRangeMessages: a number out of a field's range names the range the host holds it
// to, not its Go type's (timeout_ms -1 said "from 0 to 18446744073709551615", though an
// hour is the most), and a number beyond what a float64 holds says it is out of range
// (distortion 1e400 said it "must be a number").
func TestRangeMessages(t *testing.T) {
	for _, c := range []struct {
		body string
		v    any
		says string
	}{
		{`{"runner":"python","input":"1","timeout_ms":-1}`, &execution.Request{}, `field "timeout_ms" must be a whole number from 0 to 3600000`},
		{`{"runner":"python","input":"1","timeout_ms":1.5}`, &execution.Request{}, `field "timeout_ms" must be a whole number from 0 to 3600000`},
		{`{"session_id":"x","distortion":1e400,"variance":1}`, &pointRequest{}, `field "distortion" is out of range: 1e400 is beyond the largest number a float64 holds`},
	} {
		err := decodeBody([]byte(c.body), c.v, nil)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want it to say %s", c.body, err, c.says)
		}
	}
}

// TestClientRequestIDDocumented: README says what clientRequestID does to a client's
// X-Request-Id: a space, like a byte outside printable ASCII, becomes '?'.
func TestClientRequestIDDocumented(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/health", nil)
	r.Header.Set("X-Request-Id", "a b\x01c\u00e9")
	if got := clientRequestID(r); got != "a?b?c??" {
		t.Fatalf("clientRequestID = %q", got)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "`client_request_id` (its first 128 bytes, a space and any byte outside printable ASCII as `?`)") {
		t.Error("README does not say that a space in X-Request-Id is logged as '?'")
	}
}
