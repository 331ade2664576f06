package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// evil is text a daemon (or whoever named a session) could send to an operator's
// terminal: an escape sequence that clears the screen, one that retitles the window, a
// tab and a newline that would split a cell or a row, a C1 control (CSI), DEL and a
// right-to-left override.
const evil = "evil\x1b[2J\x1b]0;pwned\x07\tcell\nrow\u009b\x7f\u202etxt.exe"

// evilEscaped is evil as limitctl prints it.
const evilEscaped = `evil\x1b[2J\x1b]0;pwned\x07\tcell\nrow\u009b\x7f\u202etxt.exe`

// TestTerminalEscapesInAPIText: what the API answers is printed with its control
// characters escaped, in every table cell and free-text line, so that it can neither act
// on the terminal nor split a table's cells or rows.
func TestTerminalEscapesInAPIText(t *testing.T) {
	q, _ := json.Marshal(evil)
	e := string(q)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		flag := `{"flag":` + e + `,"severity":8,"reason":` + e + `,"rule_id":` + e + `,"stage":"pre","location":{"line":1,"start":0,"end":3}}`
		switch {
		case r.URL.Path == "/v1/sessions":
			fmt.Fprint(w, `{"sessions":[{"id":"s1","name":`+e+`,"state":"active","policy":`+e+`,"runners":[`+e+`]}],"next_token":`+e+`}`)
		case r.URL.Path == "/v1/traces/t1":
			fmt.Fprint(w, `{"id":"t1","session_id":`+e+`,"kind":`+e+`,"status":"active","data":{"k":`+e+`},"flags":[`+flag+`],"provenance":[{"index":0,"kind":`+e+`,"agent":`+e+`,"hash":"0123456789abcdef0123"}]}`)
		case r.URL.Path == "/v1/health":
			fmt.Fprint(w, `{"status":"ok","version":`+e+`,"plugins":[{"name":`+e+`,"kind":"storage","healthy":true,"last_error":`+e+`}]}`)
		case r.URL.Path == "/v1/governance/evaluate":
			fmt.Fprint(w, `{"findings":[`+flag+`],"errors":[`+e+`]}`)
		case strings.HasSuffix(r.URL.Path, "/executions"):
			w.Header().Set("Content-Type", "text/event-stream")
			res, _ := json.Marshal(map[string]any{"trace_id": evil, "status": evil, "error": evil, "flags": json.RawMessage(`[` + flag + `]`)})
			fmt.Fprintf(w, "event: result\ndata: %s\n\n", res)
		case r.URL.Path == "/v1/sessions/s2":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"title":"Not Found","status":404,"detail":`+e+`}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"sessions", "list"}, {"sessions", "show", "s2"}, {"traces", "show", "t1"}, {"health"},
		{"governance", "evaluate", "prompt", "x"}, {"exec", "s1", "python", "x"},
	} {
		_, stdout, stderr := limitctl(t, append([]string{"-addr", srv.URL}, args...)...)
		out := stdout + stderr
		if !strings.Contains(out, evilEscaped) {
			t.Errorf("%q: the text is not shown escaped:\n%s", args, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || r == '\u202e' {
				t.Errorf("%q: printed %U raw:\n%s", args, r, out)
				break
			}
		}
	}
	// A table keeps its shape: one line per row.
	_, stdout, _ := limitctl(t, "-addr", srv.URL, "sessions", "list")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "more: --next-token ") {
		t.Errorf("sessions list: want a header, one row and the next token:\n%s", stdout)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"plain text, é 漢字 🙂": "plain text, é 漢字 🙂",
		"a\tb\nc\rd":         `a\tb\nc\rd`,
		"\x00\x1b\x7f":       `\x00\x1b\x7f`,
		"\u0085\u009b":       `\u0085\u009b`,
		"\u202a\u202e\u2066\u2069\u200f\u061c\u2028": `\u202a\u202e\u2066\u2069\u200f\u061c\u2028`,
		"caf\xe9 \xff": `caf\xe9 \xff`,
		`back\slash`:   `back\slash`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := cleanLines("-----BEGIN-----\nAB\x1bC\n-----END-----\n"); got != "-----BEGIN-----\n"+`AB\x1bC`+"\n-----END-----\n" {
		t.Errorf("cleanLines = %q", got)
	}
}
