package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestLargeBodiesWaitTheirTurn: while other large bodies hold api.max_body_bytes_in_flight,
// a request with a large body waits for its share and is refused (503, Retry-After, its
// body unread) when it does not get it in time; small bodies never wait; a body larger
// than the whole budget gets it all; one of unknown length counts as max_body_bytes.
func TestLargeBodiesWaitTheirTurn(t *testing.T) {
	st := memstore.New()
	rules, err := governance.NewEvaluator(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	srv := New(Options{Sessions: sessions, Rules: rules, Store: st, MaxBodyBytesInFlight: 200_000})
	srv.bodies.wait = 50 * time.Millisecond
	prompt := func(n int) string {
		b, _ := json.Marshal(map[string]string{"kind": "prompt", "text": strings.Repeat("a", n)})
		return string(b)
	}
	post := func(body string, chunked bool) (*http.Response, map[string]any) {
		t.Helper()
		req := httptest.NewRequest("POST", "/v1/governance/evaluate", strings.NewReader(body))
		if chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		res := rec.Result()
		var out map[string]any
		b, _ := io.ReadAll(res.Body)
		_ = json.Unmarshal(b, &out)
		return res, out
	}
	ctx := context.Background()
	held, err := srv.bodies.Acquire(ctx, 200_000)
	if err != nil {
		t.Fatal(err)
	}
	res, out := post(prompt(100_000), false)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" || res.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(out["detail"].(string), "api.max_body_bytes_in_flight 200000") {
		t.Fatalf("a large body while the budget is held: %d %v %v", res.StatusCode, res.Header, out)
	}
	if res, out := post(prompt(1000), false); res.StatusCode != 200 {
		t.Fatalf("a small body while the budget is held: %d %v", res.StatusCode, out)
	}
	held()
	for _, n := range []int{100_000, 300_000} {
		if res, out := post(prompt(n), false); res.StatusCode != 200 {
			t.Fatalf("a body of %d bytes with the budget free: %d %v", n, res.StatusCode, out)
		}
	}
	// Every share came back.
	whole, ok := srv.bodies.TryAcquire(200_000)
	if !ok {
		t.Fatal("the budget was not given back whole")
	}
	whole()
	oneByte, _ := srv.bodies.TryAcquire(1) // one byte still held
	// A body of unknown length may be as large as max_body_bytes, and waits as such.
	if res, out := post(prompt(1000), true); res.StatusCode != 503 || !strings.Contains(out["detail"].(string), "unknown length") {
		t.Fatalf("a small body of unknown length with one byte of the budget held: %d %v", res.StatusCode, out)
	}
	oneByte()
	if res, out := post(prompt(1000), true); res.StatusCode != 200 {
		t.Fatalf("a body of unknown length with the budget free: %d %v", res.StatusCode, out)
	}

	// The gauges: a body admitted holds its share, one waiting is counted as such.
	gauges := func() string {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var keep []string
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, "limit_http_bod") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "; ")
	}
	want := "limit_http_bodies_waiting 0; limit_http_body_bytes_in_flight 0; limit_http_body_bytes_in_flight_max 200000"
	if g := gauges(); g != want {
		t.Fatalf("gauges at rest: %s, want %s", g, want)
	}
	req := httptest.NewRequest("POST", "/v1/governance/evaluate", strings.NewReader(prompt(150_000)))
	release, why := srv.admit(req)
	if release == nil {
		t.Fatal(why)
	}
	waited := make(chan string, 1)
	srv.bodies.wait = time.Minute
	go func() {
		_, out := post(prompt(100_000), false) // waits for the share held above
		waited <- fmt.Sprint(out["findings"])
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(gauges(), "limit_http_bodies_waiting 1"); {
		if time.Now().After(deadline) {
			t.Fatalf("no request counted as waiting: %s", gauges())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if g := gauges(); !strings.Contains(g, "limit_http_body_bytes_in_flight 150") {
		t.Fatalf("gauges with one body admitted and one waiting: %s", g)
	}
	release()
	if out := <-waited; out != "[]" {
		t.Fatalf("the waiting request, once let in: %s", out)
	}
	if g := gauges(); g != want {
		t.Fatalf("gauges after: %s, want %s", g, want)
	}
}

// TestDeclaredTooLargeRefusedAtOnce: a request whose Content-Length exceeds
// api.max_body_bytes is answered 413 before its body is read: no 100 Continue for a client
// that asked, and no share of api.max_body_bytes_in_flight waited for or held (a few such
// stalled requests had filled it, and a normal upload waited behind them).
func TestDeclaredTooLargeRefusedAtOnce(t *testing.T) {
	st := memstore.New()
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	srv := New(Options{Sessions: sessions, Store: st, MaxBodyBytes: 1 << 20, MaxBodyBytesInFlight: 2 << 20})
	srv.bodies.wait = time.Hour // a request that waited for its share would not be answered
	ts := httptest.NewServer(srv)
	defer ts.Close()
	held, err := srv.bodies.Acquire(context.Background(), 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer held() // before ts.Close, so that a request waiting for its share ends
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // against a hang only
		fmt.Fprintf(conn, "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n%s\r\n", expect)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close() // so that the server's handler ends
			t.Fatalf("%q: no answer: %v", expect, err)
		}
		b, _ := io.ReadAll(res.Body)
		conn.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "50000000 bytes") || !strings.Contains(string(b), "api.max_body_bytes") {
			t.Errorf("%q: %d %s", expect, res.StatusCode, b)
		}
	}
}

// TestBodyReadFailures: a body that does not arrive within the server's read timeout is
// answered 408, saying so, and one whose chunked framing is broken 400 "malformed chunked
// body"; neither quotes the connection's addresses (net/http's errors do: "read tcp4
// 127.0.0.1:…->127.0.0.1:…: i/o timeout" was answered as invalid JSON).
func TestBodyReadFailures(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ReadTimeout = 300 * time.Millisecond
	ts.Start()
	defer ts.Close()
	for _, c := range []struct {
		name, path, request string
		want                int
		says                string
	}{
		{"a body that stops", "/v1/rd/knee", "Content-Length: 100\r\n\r\n{\"points\":", 408, "not received within api.read_timeout"},
		{"a trace's body that stops", "/v1/traces", "Content-Length: 100\r\n\r\n{\"session_id\":", 408, "not received within api.read_timeout"},
		{"a bad chunk length", "/v1/rd/knee", "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "malformed chunked body"},
	} {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // against a hang only
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s", c.path, c.request)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: no answer: %v", c.name, err)
		}
		b, _ := io.ReadAll(res.Body)
		conn.Close()
		if res.StatusCode != c.want || !strings.Contains(string(b), c.says) || strings.Contains(string(b), "127.0.0.1") {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, res.StatusCode, b, c.want, c.says)
		}
	}
}
