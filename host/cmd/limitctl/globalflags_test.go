package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// daemonStub is a test daemon that records the Authorization header of each request.
type daemonStub struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newDaemonStub(t *testing.T) *daemonStub {
	t.Helper()
	d := &daemonStub{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.auth = append(d.auth, r.Header.Get("Authorization"))
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		const s = `{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"s1","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"}`
		switch {
		case r.URL.Path == "/v1/health":
			_, _ = io.WriteString(w, `{"status":"ok","version":"x","plugins":[]}`)
		case r.URL.Path == "/v1/sessions":
			_, _ = io.WriteString(w, `{"sessions":[`+s+`]}`)
		case strings.HasPrefix(r.URL.Path, "/v1/sessions/"):
			_, _ = io.WriteString(w, s)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// requests returns the Authorization headers received so far and forgets them.
func (d *daemonStub) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.auth
	d.auth = nil
	return a
}

func writeTokenFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGlobalFlagsAfterTheCommand checks that -addr and -token-file work after the command
// as before it, in both the "-flag value" and "-flag=value" forms, that given after the
// command they win over the same flag before it and over LIMIT_ADDR, LIMIT_TOKEN and
// LIMIT_TOKEN_FILE, and that LIMIT_TOKEN wins over LIMIT_TOKEN_FILE.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	const tokA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-after"
	const tokB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-before"
	fileA := writeTokenFile(t, "a", "# after\n"+tokA+"\n")
	fileB := writeTokenFile(t, "b", tokB+"\n")
	a, b := newDaemonStub(t), newDaemonStub(t)
	_, _, bundle := testBundle(t)

	for _, tc := range []struct {
		name     string
		env      map[string]string // LIMIT_ADDR, LIMIT_TOKEN_FILE, LIMIT_TOKEN
		args     []string
		wantA    string // Authorization that daemon a must get; "-" for no request to a
		wantB    string // the same for daemon b
		wantJSON bool
	}{
		{"token file after", nil, []string{"-addr", a.srv.URL, "sessions", "list", "-token-file", fileA}, "Bearer " + tokA, "-", false},
		{"token file= after", nil, []string{"-addr", a.srv.URL, "sessions", "list", "-token-file=" + fileA}, "Bearer " + tokA, "-", false},
		{"--token-file after", nil, []string{"-addr", a.srv.URL, "sessions", "list", "--token-file", fileA}, "Bearer " + tokA, "-", false},
		{"token file after wins", nil, []string{"-addr", a.srv.URL, "-token-file", fileB, "sessions", "list", "-token-file", fileA}, "Bearer " + tokA, "-", false},
		{"token file after wins over env", map[string]string{"LIMIT_TOKEN_FILE": fileB}, []string{"-addr", a.srv.URL, "sessions", "list", "-token-file", fileA}, "Bearer " + tokA, "-", false},
		{"token file after wins over LIMIT_TOKEN", map[string]string{"LIMIT_TOKEN": "token-from-the-environment"}, []string{"-addr", a.srv.URL, "sessions", "list", "-token-file", fileA}, "Bearer " + tokA, "-", false},
		{"token file before wins over LIMIT_TOKEN", map[string]string{"LIMIT_TOKEN": "token-from-the-environment"}, []string{"-addr", a.srv.URL, "-token-file", fileB, "sessions", "list"}, "Bearer " + tokB, "-", false},
		{"LIMIT_TOKEN wins over LIMIT_TOKEN_FILE", map[string]string{"LIMIT_TOKEN": "token-from-the-environment", "LIMIT_TOKEN_FILE": fileA}, []string{"-addr", a.srv.URL, "sessions", "list"}, "Bearer token-from-the-environment", "-", false},
		{"addr after", nil, []string{"sessions", "list", "-addr", a.srv.URL}, "", "-", false},
		{"addr= after", nil, []string{"sessions", "list", "-addr=" + a.srv.URL}, "", "-", false},
		{"addr after wins", nil, []string{"-addr", b.srv.URL, "sessions", "list", "-addr", a.srv.URL}, "", "-", false},
		{"addr after wins over env", map[string]string{"LIMIT_ADDR": b.srv.URL}, []string{"sessions", "list", "-addr", a.srv.URL}, "", "-", false},
		{"addr after wins over a bad env", map[string]string{"LIMIT_ADDR": "ftp://nowhere"}, []string{"sessions", "list", "-addr", a.srv.URL}, "", "-", false},
		{"addr before, token after", nil, []string{"-addr", b.srv.URL, "sessions", "list", "-token-file", fileA}, "-", "Bearer " + tokA, false},
		{"between command and subcommand", nil, []string{"sessions", "-addr", a.srv.URL, "-token-file", fileA, "list"}, "Bearer " + tokA, "-", false},
		{"among positional arguments", nil, []string{"sessions", "show", "-addr", a.srv.URL, "01M8T93BBDBZNX35WWT3BWXFZ2", "-token-file", fileA, "-o", "json"}, "Bearer " + tokA, "-", true},
		{"health", nil, []string{"health", "-addr", a.srv.URL, "-token-file=" + fileA, "-o=json"}, "Bearer " + tokA, "-", true},
		{"help needs no daemon", nil, []string{"sessions", "list", "-addr", "ftp://nowhere", "-h"}, "-", "-", false},
		{"verify needs no daemon", nil, []string{"verify", "-addr", "ftp://nowhere", "-token-file", "/nonexistent", bundle}, "-", "-", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LIMIT_ADDR", tc.env["LIMIT_ADDR"])
			t.Setenv("LIMIT_TOKEN_FILE", tc.env["LIMIT_TOKEN_FILE"])
			t.Setenv("LIMIT_TOKEN", tc.env["LIMIT_TOKEN"])
			code, stdout, stderr := limitctl(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d, want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			for _, d := range []struct {
				name string
				stub *daemonStub
				want string
			}{{"a", a, tc.wantA}, {"b", b, tc.wantB}} {
				got := d.stub.requests()
				switch {
				case d.want == "-" && len(got) != 0:
					t.Errorf("daemon %s got %d requests, want none", d.name, len(got))
				case d.want != "-" && (len(got) != 1 || got[0] != d.want):
					t.Errorf("daemon %s got Authorization %q, want one request with %q", d.name, got, d.want)
				}
			}
			if tc.wantJSON && !json.Valid([]byte(stdout)) {
				t.Errorf("stdout is not JSON: %s", stdout)
			}
		})
	}
}

// TestBadGlobalFlagsAfterTheCommand checks that a bad -addr or -token-file after the command
// is refused as clearly as before it, with exit 2 and no request sent.
func TestBadGlobalFlagsAfterTheCommand(t *testing.T) {
	a := newDaemonStub(t)
	empty := writeTokenFile(t, "empty", "# no token here\n\n")
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"missing token file", []string{"-addr", a.srv.URL, "sessions", "list", "-token-file", missing}, []string{"limitctl: cannot read the API token", missing}},
		{"token file without token", []string{"-addr", a.srv.URL, "sessions", "list", "-token-file=" + empty}, []string{"the token file " + empty + " holds no token"}},
		{"bad token file after a good one before", []string{"-addr", a.srv.URL, "-token-file", writeTokenFile(t, "good", "x\n"), "health", "-token-file", missing}, []string{"cannot read the API token"}},
		{"bad addr scheme", []string{"sessions", "list", "-addr", "ftp://nowhere"}, []string{`limitctl: -addr "ftp://nowhere" is not a daemon address`, "HOST:PORT"}},
		{"bad addr= port", []string{"health", "-addr=localhost:http-ish"}, []string{`-addr "localhost:http-ish" is not a daemon address`, "HOST:PORT"}},
		{"bad addr after a good one before", []string{"-addr", a.srv.URL, "sessions", "list", "-addr", "http://"}, []string{`-addr "http://" is not a daemon address`}},
		{"addr without value", []string{"-addr", a.srv.URL, "sessions", "list", "-addr"}, []string{"flag needs an argument: -addr", "usage:"}},
		{"token file without value", []string{"-addr", a.srv.URL, "sessions", "list", "-token-file"}, []string{"flag needs an argument: -token-file", "usage:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LIMIT_ADDR", "")
			t.Setenv("LIMIT_TOKEN_FILE", "")
			t.Setenv("LIMIT_TOKEN", "")
			code, stdout, stderr := limitctl(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "parse ") {
				t.Errorf("stderr has Go's parse error text:\n%s", stderr)
			}
			if got := a.requests(); len(got) != 0 {
				t.Errorf("daemon got %d requests, want none", len(got))
			}
		})
	}
}
