package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestExecuteWhileStopping checks that an execution asked for once the host is shutting
// down is refused with 503 problem+json and a Retry-After, streamed or not.
func TestExecuteWhileStopping(t *testing.T) {
	stopping, stop := context.WithCancel(context.Background())
	stop()
	// The engine refuses before it looks the session up: the manager is never used.
	s := New(Options{Sessions: new(session.Manager), Engine: &execution.Engine{Stopping: stopping}})
	for _, accept := range []string{"application/json", "text/event-stream"} {
		t.Run(accept, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v1/sessions/s1/executions", strings.NewReader(`{"runner":"python","input":"1"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", accept)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
			var p map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !strings.Contains(p["detail"].(string), "shutting down") {
				t.Fatalf("problem %s (%v)", rec.Body, err)
			}
		})
	}
}

// TestStreamErrorEventStatus: a streamed execution that fails after its stream began ends
// with an error event holding the problem the answer would have been, its status (503
// with retry_after for a rule plugin that cannot answer, 507, 500) included; it used to
// say nothing but the detail, so a client could not tell a failure to retry.
func TestStreamErrorEventStatus(t *testing.T) {
	var logs bytes.Buffer
	s := New(Options{Sessions: new(session.Manager), Engine: &execution.Engine{}, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	r := httptest.NewRequest("POST", "/v1/sessions/s1/executions", nil)
	w := httptest.NewRecorder()
	w.Header().Set(requestIDHeader, "stream-1")
	for _, tc := range []struct {
		err    error
		status float64
		retry  bool
	}{
		{fmt.Errorf("post: %w", execution.ErrGovernanceUnavailable), 503, true},
		// Every process a runner may have (max_processes) is running an execution.
		{fmt.Errorf("runner: %w", &plugins.RunnerBusyError{Runner: "python", Max: 2}), 503, true},
		{fmt.Errorf("pre: %w", execution.ErrUncheckable), 422, false},
		{fmt.Errorf("size: %w", execution.ErrTooLarge), 413, false},
		// The code ran: no Retry-After, which would invite running it twice.
		{&execution.RecordPendingError{TraceID: "T", Status: "ok", Err: storage.ErrUnavailable}, 503, false},
		{fmt.Errorf("record: %w", storage.ErrNoSpace), 507, false},
		{errors.New("boom"), 500, false},
	} {
		p := s.problemEvent(w, r, tc.err)
		if p["status"] != tc.status || p["detail"] == "" || p["title"] == "" || (p["retry_after"] != nil) != tc.retry {
			t.Errorf("%v: error event %v", tc.err, p)
		}
		var pending *execution.RecordPendingError
		if errors.As(tc.err, &pending) && (p["trace_id"] != "T" || p["record_pending"] != true || !strings.Contains(p["detail"].(string), "do not run it again")) {
			t.Errorf("%v: error event %v, want the trace id and record_pending", tc.err, p)
		}
	}
	// The unexpected error's log line names the stream's request id (it named none).
	if !strings.Contains(logs.String(), "request_id=stream-1") {
		t.Errorf("log of the error event: %s", logs.String())
	}
}

// TestSSEKeepAlive: a stream begins with a comment as soon as the execution runs, and
// sends a keep-alive comment whenever it has had nothing to say for sseKeepAlive, so a
// client waiting for a model's first token sees the execution is alive.
func TestSSEKeepAlive(t *testing.T) {
	old := sseKeepAlive
	sseKeepAlive = 20 * time.Millisecond
	defer func() { sseKeepAlive = old }()
	rec := httptest.NewRecorder()
	w := newSSEWriter(rec, func() {})
	w.comment("running")
	time.Sleep(150 * time.Millisecond)
	w.event("stdout", map[string]string{"data": "x"})
	w.close()
	body := rec.Body.String()
	if !strings.HasPrefix(body, ": running\n\n") || !strings.Contains(body, ": keep-alive\n\n") || !strings.HasSuffix(body, "event: stdout\ndata: {\"data\":\"x\"}\n\n") {
		t.Fatalf("stream:\n%s", body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" || rec.Code != 200 {
		t.Fatalf("status %d, Content-Type %q", rec.Code, ct)
	}
}

// TestExecuteWhileStorageDown: while the storage backend reports itself down, an
// execution is refused before it runs, with 503 and a Retry-After: code that ran must be
// recorded (it used to run, then fail to be recorded with 503, its session changed and no
// trace of it).
func TestExecuteWhileStorageDown(t *testing.T) {
	s := New(Options{Sessions: new(session.Manager), Engine: &execution.Engine{
		StorageReady: func() error { return fmt.Errorf("%w: postgres unreachable", storage.ErrUnavailable) },
	}})
	req := httptest.NewRequest("POST", "/v1/sessions/s1/executions", strings.NewReader(`{"runner":"python","input":"x = 41"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var p map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(fmt.Sprint(p["detail"]), "not run") || !strings.Contains(fmt.Sprint(p["detail"]), "cannot reach its backend") ||
		strings.Contains(fmt.Sprint(p["detail"]), "postgres unreachable") {
		t.Fatalf("status %d, Retry-After %q, problem %v", rec.Code, rec.Header().Get("Retry-After"), p)
	}
}

// TestStorageProblemsHideBackend: a storage failure's problem names the plugin and the
// kind of failure; what the backend said (an address, a database user, a file's path)
// goes to the log only.
func TestStorageProblemsHideBackend(t *testing.T) {
	var logs syncbuf.Buffer
	s := New(Options{Store: memstore.New(), Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v1/traces/x", nil)
	for _, tc := range []struct {
		err    error
		status float64
		want   string
		secret string
	}{
		{fmt.Errorf("storage get: %w: PostgreSQL at 127.0.0.1:18604 cannot be reached: failed to connect to `user=audit database=audit_storage`", storage.ErrUnavailable),
			503, "cannot reach its backend", "audit_storage"},
		{fmt.Errorf("storage put: %w: PostgreSQL at 127.0.0.1:18604 did not answer within 15s (statement_timeout + connect_timeout)", storage.ErrUnavailable),
			503, "did not answer in time", "127.0.0.1"},
		{fmt.Errorf("not run, as it could not be recorded: storage batch: %w: sqlite: /tmp/secret-dir/limit.sqlite is full", storage.ErrNoSpace),
			507, "is out of space", "secret-dir"},
	} {
		p := s.problemEvent(w, r, tc.err)
		detail := fmt.Sprint(p["detail"])
		if p["status"] != tc.status || !strings.Contains(detail, tc.want) || !strings.Contains(detail, "storage.memory") || strings.Contains(detail, tc.secret) {
			t.Errorf("%v: problem %v", tc.err, p)
		}
		if !strings.Contains(logs.String(), tc.secret) {
			t.Errorf("the log lacks the cause %q: %s", tc.secret, logs.String())
		}
	}
}

// TestExecuteWhileDiskLow: while the data_dir's disk is below host.min_free_disk an
// execution is refused before it runs, with 503 and a Retry-After saying the host's disk
// is nearly full, and the health answer is degraded with the free bytes. (Code used to
// run, its writes to the session's sparse image silently lost on the full disk.)
func TestExecuteWhileDiskLow(t *testing.T) {
	g := &diskspace.Guard{Dir: "/data", Reserve: diskspace.Reserve{Bytes: 512 << 20},
		Statfs: func(string) (diskspace.Usage, error) { return diskspace.Usage{Free: 10 << 20, Total: 40 << 20}, nil }}
	s := New(Options{Sessions: new(session.Manager), Engine: &execution.Engine{DiskReady: g.Check}, Disk: g.Status})
	req := httptest.NewRequest("POST", "/v1/sessions/s1/executions", strings.NewReader(`{"runner":"python","input":"open('f','wb').write(b'x')"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var p map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		rec.Header().Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(fmt.Sprint(p["detail"]), "not run: the host's disk is nearly full: 10.0 MiB free") {
		t.Fatalf("status %d, Retry-After %q, problem %v", rec.Code, rec.Header().Get("Retry-After"), p)
	}

	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health", nil))
	var h healthResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || rec.Code != http.StatusServiceUnavailable || h.Status != "degraded" ||
		h.Disk == nil || h.Disk.Healthy || h.Disk.FreeBytes != 10<<20 || h.Disk.MinFreeBytes != 512<<20 {
		t.Fatalf("health %d %s (%v)", rec.Code, rec.Body, err)
	}

	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "disk is nearly full") {
		t.Errorf("readiness while the disk is low: %d %s", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `limit_executions_refused_total{reason="disk_low"} 1`) {
		t.Errorf("the refusal is not counted as disk_low:\n%s", rec.Body)
	}
}

// TestDiskHealthForOperators: how full the host's disk is shows to an operator's token
// only; the health check without one (or a user's) says whether the disk is healthy.
func TestDiskHealthForOperators(t *testing.T) {
	g := &diskspace.Guard{Dir: "/data", Reserve: diskspace.Reserve{Bytes: 512 << 20},
		Statfs: func(string) (diskspace.Usage, error) { return diskspace.Usage{Free: 10 << 20, Total: 40 << 20}, nil }}
	op, user := strings.Repeat("o", 32), strings.Repeat("u", 32)
	s := New(Options{Sessions: new(session.Manager), Disk: g.Status, Tokens: []config.Token{
		{Digest: sha256.Sum256([]byte(op))}, {Digest: sha256.Sum256([]byte(user)), User: "alice"}}})
	for _, c := range []struct {
		token   string
		figures bool
	}{{"", false}, {user, false}, {op, true}} {
		req := httptest.NewRequest("GET", "/v1/health", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var h healthResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || rec.Code != 503 || h.Disk == nil || h.Disk.Healthy {
			t.Fatalf("health (token %q): %d %s", c.token, rec.Code, rec.Body)
		}
		if got := h.Disk.FreeBytes != 0 && h.Disk.TotalBytes != 0 && h.Disk.MinFreeBytes != 0; got != c.figures {
			t.Errorf("health (token %q) shows the disk's figures: %v, want %v: %s", c.token, got, c.figures, rec.Body)
		}
		if !c.figures && (strings.Contains(rec.Body.String(), "MiB") || h.Disk.Detail == "") {
			t.Errorf("health (token %q): %s", c.token, rec.Body)
		}
	}
}
