package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
)

// TestProblemListener sends requests net/http refuses before any handler runs and checks
// that each answer is problem+json with an X-Request-Id and the right status, while the
// handler's own answers pass unchanged.
func TestProblemListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(requestIDHeader, "handler-id")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusBadRequest)
			// The same words as net/http's own answer, from a handler: left alone.
			_, _ = io.WriteString(w, "400 Bad Request")
		}),
		MaxHeaderBytes:    4096,
		ReadHeaderTimeout: 5 * time.Second,
	}
	var logged syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logged, JSONFormat: true})
	go func() { _ = srv.Serve(ProblemListener(ln, logger)) }()
	t.Cleanup(func() { _ = srv.Close() })

	for _, tc := range []struct {
		name    string
		request string
		status  int
		detail  string
	}{
		{"bad escape in the path", "GET /v1/traces/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "could not be parsed"},
		{"garbage request line", "HELLO\r\n\r\n", 400, "could not be parsed"},
		{"no Host header", "GET /v1/health HTTP/1.1\r\n\r\n", 400, "missing required Host header"},
		{"header too large", "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", 431, "larger than the server accepts"},
		{"unknown expectation", "GET /v1/health HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n", 417, "100-continue"},
		{"unknown transfer encoding", "POST /v1/traces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n", 501, "Unsupported transfer encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, ln.Addr().String(), tc.request)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if id := resp.Header.Get(requestIDHeader); !hostRequestID(id) {
				t.Errorf("X-Request-Id %q", id)
			}
			var p Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if p.Status != tc.status || p.Title != http.StatusText(tc.status) || p.Type != "about:blank" || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("problem %+v, want status %d and a detail with %q", p, tc.status, tc.detail)
			}
			// The answer is in the log under its request id, as the handlers' refusals are.
			id := resp.Header.Get(requestIDHeader)
			found := false
			for _, line := range strings.Split(logged.String(), "\n") {
				var l map[string]any
				if json.Unmarshal([]byte(line), &l) == nil && l["request_id"] == id {
					found = true
					if l["@level"] != "warn" || l["status"] != float64(tc.status) || l["reason"] != p.Detail || l["remote"] == nil || l["remote"] == "" {
						t.Errorf("log line %s", line)
					}
				}
			}
			if !found {
				t.Errorf("request id %s not logged:\n%s", id, logged.String())
			}
		})
	}

	resp := rawRequest(t, ln.Addr().String(), "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get(requestIDHeader) != "handler-id" || string(body) != "400 Bad Request" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("the handler's own answer was changed: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// rawRequest writes request as is on a new connection and reads the answer.
func rawRequest(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

// net/http half-closes a connection through this method before a lingering close.
var _ interface{ CloseWrite() error } = problemConn{}

func TestRewriteServerErrorLeavesOtherWritesAlone(t *testing.T) {
	for _, b := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nok",
		"HTTP/1.1 400 Bad Request\r\nX-Request-Id: a\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad\r\nRequest",
		"HTTP/1.1 4xx Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nX-Request-Id: a\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 2\r\n\r\n{}",
		"1f\r\n{\"a\":1}\r\n",
		"",
	} {
		if _, ok := rewriteServerError([]byte(b)); ok {
			t.Errorf("rewrote %q", b)
		}
	}
}
