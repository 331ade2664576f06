package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// envOf returns a getenv reading from m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigureDiagnostics(t *testing.T) {
	const secret = "s3cr3t-pa55"
	tests := []struct {
		name     string
		config   string
		env      map[string]string
		wantPath []string
		says     string
	}{
		{"no url anywhere", `{}`, nil, []string{"url"}, "no PostgreSQL URL"},
		{"empty url, no env", `{"url": ""}`, nil, []string{"url"}, "no PostgreSQL URL"},
		{"invalid url", `{"url": "postgres://u:` + secret + `@host:notaport/db"}`, nil, []string{"url"}, "invalid PostgreSQL URL"},
		{"invalid DATABASE_URL", `{}`, map[string]string{"DATABASE_URL": "postgres://u:" + secret + "@host:99999999/db"}, nil, "in DATABASE_URL"},
		{"url of wrong type", `{"url": 5}`, nil, []string{"url"}, "url"},
		{"blank url", `{"url": "  "}`, nil, []string{"url"}, "url is empty"},
		{"blank DATABASE_URL", `{}`, map[string]string{"DATABASE_URL": " "}, nil, "DATABASE_URL is empty"},
		{"unparseable connect_timeout", `{"url": "postgres://h/db", "connect_timeout": "soon"}`, nil, []string{"connect_timeout"}, "invalid duration"},
		{"zero connect_timeout", `{"url": "postgres://h/db", "connect_timeout": "0s"}`, nil, []string{"connect_timeout"}, "at least"},
		{"unparseable statement_timeout", `{"url": "postgres://h/db", "statement_timeout": "long"}`, nil, []string{"statement_timeout"}, "invalid duration"},
		{"tiny statement_timeout", `{"url": "postgres://h/db", "statement_timeout": "1us"}`, nil, []string{"statement_timeout"}, "at least 1ms"},
		{"zero max_conns", `{"url": "postgres://h/db", "max_conns": 0}`, nil, []string{"max_conns"}, "max_conns"},
		{"unknown attribute", `{"url": "postgres://h/db", "bogus": 1}`, nil, []string{"bogus"}, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			s.getenv = envOf(tt.env)
			ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tt.config), ValidateOnly: true})
			if len(ds) != 1 || ds[0].Severity != base.SeverityError {
				t.Fatalf("got %v, want one error", ds)
			}
			if !slices.Equal(ds[0].Path, tt.wantPath) || !strings.Contains(ds[0].Error(), tt.says) {
				t.Errorf("got %+v, want an error at %v saying %q", ds[0], tt.wantPath, tt.says)
			}
			if strings.Contains(ds[0].Error(), secret) {
				t.Errorf("diagnostic shows the password: %v", ds[0])
			}
		})
	}
}

func TestConfigureValidURLs(t *testing.T) {
	for _, tt := range []struct {
		name   string
		config string
		env    map[string]string
	}{
		{"url in config", `{"url": "postgres://u:p@db.example:6432/limit?sslmode=disable"}`, nil},
		{"DATABASE_URL", `{}`, map[string]string{"DATABASE_URL": "postgres://u:p@db.example/limit"}},
		{"key=value string", `{"url": "host=db.example port=5433 user=u password=p dbname=limit"}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			s.getenv = envOf(tt.env)
			if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tt.config), ValidateOnly: true}); len(ds) != 0 {
				t.Errorf("got %v, want no diagnostics", ds)
			}
		})
	}
	// The config's url wins over DATABASE_URL.
	set, pcfg, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"url": "postgres://a:5432/x"}`)},
		envOf(map[string]string{"DATABASE_URL": "postgres://b:5432/y"}))
	if ds.HasErrors() || set.fromEnv || pcfg.ConnConfig.Host != "a" {
		t.Errorf("url and DATABASE_URL both set: host %q fromEnv %v (%v), want the config's url", pcfg.ConnConfig.Host, set.fromEnv, ds)
	}
	if set.String() != `{"connect_timeout":"5s","max_conns":16,"statement_timeout":"10s","url_from":"url"}` {
		t.Errorf("settings render as %s", set)
	}
}

func TestRedact(t *testing.T) {
	for _, tt := range []struct {
		name, msg, url, secret string
	}{
		{"literal", "auth failed for hunter22", "postgres://u:hunter22@h/db", "hunter22"},
		{"url in message", "cannot parse `postgres://u:hunter22@h/db`", "postgres://u:hunter22@h/db", "hunter22"},
		{"other url in message", "dial postgres://x:zzzzzz@h/db", "", "zzzzzz"},
		{"percent-encoded", "failed with p%40ss%3Aword%21", "postgres://u:p%40ss%3Aword%21@h/db", "p%40ss%3Aword%21"},
		{"decoded", "failed with p@ss:word!", "postgres://u:p%40ss%3Aword%21@h/db", "p@ss:word!"},
		{"key=value", "cannot parse `host=h password=hunter22 dbname=x`", "host=h password=hunter22 dbname=x", "hunter22"},
		{"quoted key=value", "bad: password='a b c d'", "password='a b c d'", "a b c d"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := redact(tt.msg, tt.url)
			if strings.Contains(got, tt.secret) {
				t.Errorf("redact(%q) = %q, still shows %q", tt.msg, got, tt.secret)
			}
		})
	}
}

// TestRedactKeepsTheRest: only the password's value is hidden; the query parameters after
// it and the quote closing the URL stay, so the message still says what is wrong.
func TestRedactKeepsTheRest(t *testing.T) {
	for _, tt := range []struct{ msg, url, want string }{
		{"cannot parse `postgres://u@h/db?password=SECRETPW&sslmode=bogus`: invalid sslmode",
			"postgres://u@h/db?password=SECRETPW&sslmode=bogus",
			"cannot parse `postgres://u@h/db?password=xxxxx&sslmode=bogus`: invalid sslmode"},
		{"cannot parse `postgres://u@h/db?password=SECRETPW&sslmode=bogus`", "",
			"cannot parse `postgres://u@h/db?password=xxxxx&sslmode=bogus`"},
		{"bad: \"host=h password=a&b%c dbname=x\"", "host=h password=a&b%c dbname=x", "bad: \"host=h password=xxxxx dbname=x\""},
	} {
		if got := redact(tt.msg, tt.url); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

// TestUnreachableServer points the plugin at a port where nothing listens: Configure
// fails within the connect timeout with an error naming host:port and not the password,
// and leaves the plugin unconfigured.
func TestUnreachableServer(t *testing.T) {
	port := closedPort(t)
	const secret = "not-the-real-one"
	s := newStore()
	s.getenv = envOf(nil)
	defer s.Close()
	start := time.Now()
	ds := s.Configure(context.Background(), base.ConfigureRequest{Config: fmt.Appendf(nil,
		`{"url": "postgres://limit:%s@127.0.0.1:%d/limit?sslmode=disable", "connect_timeout": "1s"}`, secret, port)})
	elapsed := time.Since(start)
	if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, []string{"url"}) {
		t.Fatalf("got %v, want one error at url", ds)
	}
	msg := ds[0].Error()
	if want := fmt.Sprintf("cannot connect to PostgreSQL at 127.0.0.1:%d", port); !strings.Contains(msg, want) {
		t.Errorf("diagnostic %q does not say %q", msg, want)
	}
	if strings.Contains(msg, secret) {
		t.Errorf("diagnostic shows the password: %q", msg)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Configure took %v with a 1s connect timeout", elapsed)
	}
	if err := s.Put(context.Background(), "ns", []byte("k"), nil); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("Put after a failed Configure: got %v, want not configured", err)
	}
}

// closedPort returns a loopback TCP port where nothing listens.
func closedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestMigrationsAreContiguous(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.description == "" || m.sql == "" {
			t.Errorf("migration %d: %+v; versions must count from 1 without gaps", i, m)
		}
	}
}

func TestSegments(t *testing.T) {
	put := func(k, v string) storage.Op { return storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v)} }
	del := func(k string) storage.Op { return storage.Op{Kind: storage.OpDelete, Key: []byte(k)} }
	in := func(ns string, op storage.Op) storage.Op { op.Namespace = ns; return op }
	render := func(segs []segment) string {
		var parts []string
		for _, sg := range segs {
			var items []string
			for i, k := range sg.keys {
				if sg.put {
					items = append(items, string(k)+"="+string(sg.values[i]))
				} else {
					items = append(items, string(k))
				}
			}
			kind := "del"
			if sg.put {
				kind = "put"
			}
			if string(sg.ns) != "ns" {
				kind = string(sg.ns) + ":" + kind
			}
			parts = append(parts, kind+"("+strings.Join(items, ",")+")")
		}
		return strings.Join(parts, " ")
	}
	for _, tt := range []struct {
		ops  []storage.Op
		want string
	}{
		{[]storage.Op{put("a", "1"), put("b", "2")}, "put(a=1,b=2)"},
		{[]storage.Op{put("a", "1"), put("a", "2"), put("b", "3")}, "put(a=2,b=3)"},
		{[]storage.Op{put("a", "1"), del("a"), put("a", "2")}, "put(a=1) del(a) put(a=2)"},
		{[]storage.Op{del("x"), del("y"), put("a", ""), del("a")}, "del(x,y) put(a=) del(a)"},
		// A run ends where the namespace changes; the same key in two namespaces is two keys.
		{[]storage.Op{put("a", "1"), in("other", put("a", "2")), in("ns", put("b", "3")), put("c", "4")}, "put(a=1) other:put(a=2) put(b=3,c=4)"},
		{[]storage.Op{in("other", del("a")), in("other", del("b")), del("a")}, "other:del(a,b) del(a)"},
	} {
		if got := render(segments("ns", tt.ops)); got != tt.want {
			t.Errorf("segments: got %s, want %s", got, tt.want)
		}
	}
}

// TestCallsBeforeConfigureAndAfterClose checks that an unconfigured or closed store
// refuses every call as unavailable, saying which.
func TestCallsBeforeConfigureAndAfterClose(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	calls := map[string]func() error{
		"get":    func() error { _, _, err := s.Get(ctx, "ns", []byte("k")); return err },
		"put":    func() error { return s.Put(ctx, "ns", []byte("k"), []byte("v")) },
		"delete": func() error { _, err := s.Delete(ctx, "ns", []byte("k")); return err },
		"scan":   func() error { _, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"}); return err },
		"batch": func() error {
			return s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("k")}})
		},
		"cas": func() error {
			_, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k")})
			return err
		},
	}
	for _, phase := range []struct{ name, says string }{{"before Configure", "not configured"}, {"after Close", "closed"}} {
		if phase.name == "after Close" {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), phase.says) {
				t.Errorf("%s %s: got %v, want ErrUnavailable saying %q", name, phase.name, err, phase.says)
			}
		}
	}
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: json.RawMessage(`{"url": "postgres://h/db"}`)}); !ds.HasErrors() {
		t.Error("Configure after Close succeeded")
	}
}
