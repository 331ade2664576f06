package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// problem answers as the API's writeProblem does.
func problem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Request-Id", "req-1")
	w.WriteHeader(status)
	io.WriteString(w, `{"detail":"`+detail+`","instance":"`+r.URL.Path+`","status":`+strconv.Itoa(status)+`,"title":"`+http.StatusText(status)+`","type":"about:blank"}`+"\n")
}

// TestHealthProblem: a health check the API refuses (a peer it does not serve, a panic)
// is answered as a problem, which Health returns as an *Error with its status and detail,
// not as an answer it cannot decode.
func TestHealthProblem(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			problem(w, r, status, "connections from sandboxed code may not use the API")
		}))
		h, err := New(srv.URL).Health(context.Background())
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.Status != status || e.Detail != "connections from sandboxed code may not use the API" || e.RequestID != "req-1" {
			t.Errorf("HTTP %d: health answered %+v, %v (%T)", status, h, err, err)
		}
		if h != nil {
			t.Errorf("HTTP %d: health returned %+v with a problem", status, h)
		}
	}
}

// TestHealthDegraded: a degraded host's 503 comes back as its health and an *Error that
// names the request.
func TestHealthDegraded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-2")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"degraded","version":"1","plugins":[{"name":"sqlite","healthy":false}]}`+"\n")
	}))
	defer srv.Close()
	h, err := New(srv.URL).Health(context.Background())
	var e *Error
	if h == nil || h.Status != "degraded" || len(h.Plugins) != 1 || !errors.As(err, &e) || e.Status != 503 || e.RequestID != "req-2" {
		t.Fatalf("health answered %+v, %v", h, err)
	}
}

// countConns returns an unstarted test server of h and a count of the connections made
// to it.
func countConns(h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	return srv, &n
}

// TestExecuteStreamReusesConnection: a stream read to its result leaves its connection
// for the next call, though the response ends a moment after the result event (as the
// API's does, once its handler returns).
func TestExecuteStreamReusesConnection(t *testing.T) {
	srv, conns := countConns(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "event: stdout\ndata: {\"data\":\"hi\"}\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "event: result\ndata: {\"status\":\"ok\"}\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
	})
	defer srv.Close()
	c := New(srv.URL)
	for range 3 {
		if _, err := c.ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 streamed executions used %d connections", n)
	}
}

// TestHealthReusesConnection: a health answer too long for one write (chunked) is read to
// its end, so that the next call reuses the connection.
func TestHealthReusesConnection(t *testing.T) {
	srv, conns := countConns(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok","version":"1","plugins":[`)
		w.(http.Flusher).Flush()
		for i := range 200 {
			if i > 0 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, `{"name":"p","kind":"runner","healthy":true}`)
		}
		io.WriteString(w, "]}\n")
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
	})
	defer srv.Close()
	c := New(srv.URL)
	for range 3 {
		if _, err := c.Health(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 health checks used %d connections", n)
	}
}

// sseServer answers an execution with the given pieces of an event stream, each written
// and flushed on its own.
func sseServer(pieces ...string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Request-Id", "req-3")
		w.WriteHeader(http.StatusOK)
		for _, p := range pieces {
			io.WriteString(w, p)
			w.(http.Flusher).Flush()
		}
	}))
}

// TestExecuteStreamLegalSSE: every way of writing an event stream that the SSE standard
// allows reads the same: CRLF, CR or LF line ends, comments, retry and id fields, fields
// without a space after the colon, data over several lines, events split anywhere
// between writes.
func TestExecuteStreamLegalSSE(t *testing.T) {
	const want = "hi|multi\nline|"
	for name, pieces := range map[string][]string{
		"lf":    {"event: stdout\ndata: {\"data\":\"hi\"}\n\nevent: stdout\ndata: {\"data\":\ndata: \"multi\\nline\"}\n\nevent: result\ndata: {\"status\":\"ok\"}\n\n"},
		"crlf":  {"event: stdout\r\ndata: {\"data\":\"hi\"}\r\n\r\nevent: stdout\r\ndata: {\"data\":\r\ndata: \"multi\\nline\"}\r\n\r\nevent: result\r\ndata: {\"status\":\"ok\"}\r\n\r\n"},
		"cr":    {"event: stdout\rdata: {\"data\":\"hi\"}\r\revent: stdout\rdata: {\"data\":\rdata: \"multi\\nline\"}\r\revent: result\rdata: {\"status\":\"ok\"}\r\r"},
		"split": {"ev", "ent: std", "out\r", "\ndata:{\"data\":\"h", "i\"}\r", "\n\r", "\n: keep-alive\n\nretry: 3000\nid: 7\nevent:stdout\ndata:{\"data\":\ndata:\"multi\\nline\"}\n", "\n", "event: result\r", "data: {\"status\":\"ok\"}\r", "\r"},
	} {
		srv := sseServer(pieces...)
		var got strings.Builder
		res, err := New(srv.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, func(ev Event) {
			if ev.Kind != "stdout" {
				t.Errorf("%s: event %+v", name, ev)
			}
			got.WriteString(ev.Data + "|")
		})
		srv.Close()
		if err != nil || res.Status != "ok" || got.String() != want {
			t.Errorf("%s: events %q, result %+v, %v", name, got.String(), res, err)
		}
	}
}

// TestSSELinesReadsAtEOF: an event stream read in two pieces, wherever it is cut, the
// last piece coming with the end of input (as an HTTP body's last read may), yields every
// line. A CRLF cut between its CR and LF made the split function skip the LF without a
// token, which a Scanner at the end of its input takes for the end of the lines (seen as
// a flaky TestExecuteStreamLegalSSE under the race detector: the lines after "hi" lost).
func TestSSELinesReadsAtEOF(t *testing.T) {
	stream := "event: stdout\r\ndata:{\"data\":\"hi\"}\r\n\r\n: keep-alive\n\nid: 7\nevent:stdout\ndata:x\n\nevent: result\rdata: {}\r\r"
	want := []string{"event: stdout", `data:{"data":"hi"}`, "", ": keep-alive", "", "id: 7", "event:stdout", "data:x", "", "event: result", "data: {}", ""}
	for cut := 1; cut < len(stream); cut++ {
		sc := bufio.NewScanner(&piecesThenEOF{pieces: []string{stream[:cut], stream[cut:]}})
		sc.Split(sseLines())
		var got []string
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		if !slices.Equal(got, want) || sc.Err() != nil {
			t.Fatalf("cut after %q: lines %q, %v; want %q", stream[:cut], got, sc.Err(), want)
		}
	}
}

// piecesThenEOF reads its pieces one per Read, returning io.EOF with the last.
type piecesThenEOF struct{ pieces []string }

func (r *piecesThenEOF) Read(p []byte) (int, error) {
	if len(r.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[0])
	if r.pieces[0] = r.pieces[0][n:]; r.pieces[0] == "" {
		r.pieces = r.pieces[1:]
	}
	if len(r.pieces) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// TestExecuteStreamErrorEvent: an execution that fails once its stream started comes
// back as an *Error with the problem's detail and the request's id.
func TestExecuteStreamErrorEvent(t *testing.T) {
	srv := sseServer("event: stdout\ndata: {\"data\":\"x\"}\n\n",
		"event: error\ndata: {\"detail\":\"runner process died\",\"title\":\"Execution failed\",\"type\":\"about:blank\"}\n\n")
	defer srv.Close()
	res, err := New(srv.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil)
	var e *Error
	if res != nil || !errors.As(err, &e) || e.Detail != "runner process died" || e.Title != "Execution failed" || e.RequestID != "req-3" {
		t.Fatalf("got %+v, %v", res, err)
	}
	// The host's error event carries the problem's status and, for a failure worth
	// retrying, retry_after.
	srv2 := sseServer("event: stdout\ndata: {\"data\":\"x\"}\n\n",
		"event: error\ndata: {\"detail\":\"rule plugin unavailable\",\"title\":\"Service Unavailable\",\"status\":503,\"retry_after\":5}\n\n")
	defer srv2.Close()
	_, err = New(srv2.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil)
	if !errors.As(err, &e) || e.Status != 503 || e.RetryAfter != 5*time.Second || StatusOf(err) != 503 {
		t.Fatalf("got %v (%+v)", err, e)
	}
}

// TestExecuteStreamCancel: cancelling the context while the stream waits for output ends
// the call with the context's error.
func TestExecuteStreamCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "event: stdout\ndata: {\"data\":\"x\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(srv.URL).ExecuteStream(ctx, "s1", ExecuteRequest{Runner: "echo"}, func(Event) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// TestExecuteStreamEnds: a stream cut before its result is an error, not a result.
func TestExecuteStreamEnds(t *testing.T) {
	srv := sseServer("event: stdout\ndata: {\"data\":\"x\"}\n\n", "event: result\ndata: {\"status\":")
	defer srv.Close()
	res, err := New(srv.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil)
	if res != nil || err == nil {
		t.Fatalf("got %+v, %v", res, err)
	}
}

// TestBaseURLTrailingSlash: a Client made without New, whose BaseURL ends in a slash,
// still asks for the API's paths (not "//v1/...", which the API answers 404).
func TestBaseURLTrailingSlash(t *testing.T) {
	srv := keyServer(t, nil)
	c := &Client{BaseURL: srv.URL + "/"}
	if k, err := c.ProvenanceKey(context.Background()); err != nil || k.Fingerprint != "f" {
		t.Fatalf("got %+v, %v", k, err)
	}
}

// TestRetryAfter: Retry-After is read in both its forms, seconds and an HTTP date (as a
// proxy in front of the host may send it).
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		header   string
		min, max time.Duration
	}{
		{"5", 5 * time.Second, 5 * time.Second},
		{time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat), 25 * time.Second, 31 * time.Second},
		{time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat), 0, 0},
		{"soon", 0, 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", tc.header)
			problem(w, r, http.StatusServiceUnavailable, "storage unavailable")
		}))
		_, err := New(srv.URL).GovernanceStats(context.Background())
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.Status != 503 || e.RetryAfter < tc.min || e.RetryAfter > tc.max {
			t.Errorf("Retry-After %q: got %v (%+v)", tc.header, err, e)
		}
	}
}

// TestExecuteStreamCut: a stream cut before its result (the host went away) says so, not
// just "unexpected EOF".
func TestExecuteStreamCut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "event: stdout\ndata: {\"data\":\"x\"}\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	res, err := New(srv.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil)
	if res != nil || err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "event stream") {
		t.Fatalf("got %+v, %v", res, err)
	}
}

// TestSSELines: lines end in CRLF, LF or CR alone, however the stream is cut into reads
// (a CRLF split between two reads is one line end, not two).
func TestSSELines(t *testing.T) {
	const in = "a\r\nb\nc\rd\r\r\ne\n\n\rf"
	want := []string{"a", "b", "c", "d", "", "e", "", "", "f"}
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(in) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
	} {
		sc := bufio.NewScanner(r())
		sc.Split(sseLines())
		var got []string
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		if sc.Err() != nil || !slices.Equal(got, want) {
			t.Errorf("%s: lines %q, %v; want %q", name, got, sc.Err(), want)
		}
	}
}

// TestFailedCallReturnsNil: a call that fails returns a nil answer with its error, not a
// zero value a caller checking the answer could take for one.
func TestFailedCallReturnsNil(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"type":"about:blank","title":"Not Found","status":404,"detail":"session not found"}`)
	}))
	defer srv.Close()
	c := New(srv.URL)
	s, err := c.GetSession(context.Background(), "nope")
	if s != nil || StatusOf(err) != 404 {
		t.Fatalf("GetSession = %+v, %v; want nil and a 404", s, err)
	}
	tr, err := c.GetTrace(context.Background(), "nope")
	if tr != nil || StatusOf(err) != 404 {
		t.Fatalf("GetTrace = %+v, %v; want nil and a 404", tr, err)
	}
}

// TestGovernanceStatsPages: GovernanceStats follows the API's pages of sessions to the end
// and adds up their sums, so its Overall is the host's.
func TestGovernanceStatsPages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Query().Get("next_token") {
		case "":
			io.WriteString(w, `{"overall":{"flags":3,"by_flag":{"HighRisk":3},"by_severity":{"5":3}},"sessions":{"A":{"flags":1},"B":{"flags":2}},"next_token":"p2"}`)
		case "p2":
			io.WriteString(w, `{"overall":{"flags":4,"by_flag":{"HighRisk":1,"Anomaly":3},"quarantined":1},"sessions":{"C":{"flags":4}}}`)
		}
	}))
	defer srv.Close()
	st, err := New(srv.URL).GovernanceStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o := st.Overall
	if o.Flags != 7 || o.ByFlag["HighRisk"] != 4 || o.ByFlag["Anomaly"] != 3 || o.BySeverity["5"] != 3 || o.Quarantined != 1 || len(st.Sessions) != 3 || st.NextToken != "" {
		t.Errorf("got %+v", st)
	}
}

// TestSessionOwners: a session request carries owner when given, a session's owner is
// read, and ListSessionsOf asks for the owner's sessions (ListSessions for every one).
func TestSessionOwners(t *testing.T) {
	var queries, bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		queries, bodies = append(queries, r.URL.RawQuery), append(bodies, string(b))
		w.Header().Set("Content-Type", "application/json")
		if r.Method == "POST" {
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"s1","owner":"alice"}`)
			return
		}
		io.WriteString(w, `{"sessions":[{"id":"s1","owner":"alice"}]}`)
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx := context.Background()
	s, err := c.CreateSession(ctx, CreateSessionRequest{Name: "x", Owner: "alice"})
	if err != nil || s.Owner != "alice" || bodies[0] != `{"name":"x","owner":"alice"}` {
		t.Fatalf("CreateSession: %+v %v, sent %s", s, err, bodies[0])
	}
	if _, err := c.CreateSession(ctx, CreateSessionRequest{Name: "y"}); err != nil || strings.Contains(bodies[1], "owner") {
		t.Fatalf("CreateSession without owner sent %s (%v)", bodies[1], err)
	}
	l, err := c.ListSessionsOf(ctx, "alice", 10, "")
	if err != nil || len(l.Sessions) != 1 || l.Sessions[0].Owner != "alice" || queries[2] != "owner=alice&per_page=10" {
		t.Fatalf("ListSessionsOf: %+v %v, query %q", l, err, queries[2])
	}
	if _, err := c.ListSessions(ctx, 10, ""); err != nil || queries[3] != "per_page=10" {
		t.Fatalf("ListSessions: query %q (%v)", queries[3], err)
	}
}

// TestExecuteStreamErrorEventExtra: a problem that comes as a stream's error event fills
// Extra as the same problem answered without a stream does (an execution whose record is
// pending: its trace_id, execution_status and record_pending), retry_after aside, which
// stands for the answer's Retry-After header.
func TestExecuteStreamErrorEventExtra(t *testing.T) {
	const body = `{"detail":"the execution ran (status ok) but its trace could not be stored yet","execution_status":"ok",` +
		`"instance":"/v1/sessions/s1/executions","record_pending":true,"status":503,"title":"Service Unavailable","trace_id":"01TRACE","type":"about:blank"}`
	sse := sseServer("event: stdout\ndata: {\"data\":\"x\"}\n\n", "event: error\ndata: "+strings.TrimSuffix(body, "}")+`,"retry_after":5}`+"\n\n")
	defer sse.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, body)
	}))
	defer plain.Close()
	ctx := context.Background()
	_, serr := New(sse.URL).ExecuteStream(ctx, "s1", ExecuteRequest{Runner: "echo"}, nil)
	_, perr := New(plain.URL).Execute(ctx, "s1", ExecuteRequest{Runner: "echo"})
	var se, pe *Error
	if !errors.As(serr, &se) || !errors.As(perr, &pe) {
		t.Fatalf("stream: %v; answer: %v", serr, perr)
	}
	want := map[string]string{"trace_id": `"01TRACE"`, "execution_status": `"ok"`, "record_pending": "true"}
	for name, e := range map[string]*Error{"stream": se, "answer": pe} {
		if len(e.Extra) != len(want) {
			t.Errorf("%s: Extra %q, want %q", name, e.Extra, want)
		}
		for k, v := range want {
			if string(e.Extra[k]) != v {
				t.Errorf("%s: Extra[%s] = %s, want %s", name, k, e.Extra[k], v)
			}
		}
	}
	if se.Status != 503 || se.RetryAfter != 5*time.Second || se.Detail != pe.Detail {
		t.Errorf("stream: %+v", se)
	}
}

// TestErrorStatusAndInstance: an answered problem's Status is the HTTP status, not the
// body's "status" member (advisory, RFC 9457 §3.1.2; a proxy may answer another), and its
// "instance" member is kept; a stream's error event, whose HTTP status was 200, takes the
// member's status.
func TestErrorStatusAndInstance(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"boom","instance":"/v1/sessions/s1"}`)
	}))
	defer srv.Close()
	_, err := New(srv.URL).GetSession(context.Background(), "s1")
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || StatusOf(err) != 503 || e.Instance != "/v1/sessions/s1" || e.Extra["instance"] != nil {
		t.Errorf("answer: %v (%+v)", err, e)
	}
	sse := sseServer(`event: error` + "\n" + `data: {"title":"Insufficient Storage","status":507,"detail":"full","instance":"/v1/sessions/s1/executions"}` + "\n\n")
	defer sse.Close()
	_, err = New(sse.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, nil)
	if !errors.As(err, &e) || e.Status != 507 || e.Instance != "/v1/sessions/s1/executions" {
		t.Errorf("stream: %v (%+v)", err, e)
	}
}

// TestPlainErrorBounded: an error answer that is not a problem (a proxy's HTML page) gives
// a Detail of a few hundred bytes with the body's length, not the whole body; a short one
// is kept whole.
func TestPlainErrorBounded(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{"<html>" + strings.Repeat("é", 50000) + "</html>", "(100013 bytes)"},
		{strings.Repeat("x", 2<<20), "(more than 1048576 bytes)"},
		{"Bad Gateway\n", "Bad Gateway"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, tc.body)
		}))
		_, err := New(srv.URL).GetSession(context.Background(), "s1")
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.Status != 502 || len(err.Error()) > 400 || !strings.HasSuffix(e.Detail, tc.want) || !utf8.ValidString(e.Detail) {
			t.Errorf("%d-byte body: %d-byte error %.80q…, detail ending %q", len(tc.body), len(err.Error()), err, e.Detail[max(len(e.Detail)-40, 0):])
		}
	}
}

// TestExecuteStreamNotAStream: a host (or proxy) that answers an execution's result as
// JSON instead of an event stream gives that result, not "stream lost"; an answer of
// another type is an error that says what came.
func TestExecuteStreamNotAStream(t *testing.T) {
	for _, tc := range []struct {
		ctype, body, wantErr string
	}{
		{"application/json; charset=utf-8", `{"trace_id":"01TRACE","status":"ok","stdout":"hi\n","exit_code":0}`, ""},
		{"text/html", "<html>hello</html>", `Content-Type "text/html", not an event stream`},
		{"", "", `Content-Type "", not an event stream`},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tc.ctype)
			io.WriteString(w, tc.body)
		}))
		var events int
		res, err := New(srv.URL).ExecuteStream(context.Background(), "s1", ExecuteRequest{Runner: "echo"}, func(Event) { events++ })
		srv.Close()
		switch {
		case tc.wantErr == "" && (err != nil || res.TraceID != "01TRACE" || res.Stdout != "hi\n" || events != 0):
			t.Errorf("%s: got %+v, %v, %d events", tc.ctype, res, err, events)
		case tc.wantErr != "" && (res != nil || err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, ErrStreamLost)):
			t.Errorf("%s: got %+v, %v; want an error with %q", tc.ctype, res, err, tc.wantErr)
		}
	}
}

// TestAddressesAndIDs: New takes an address as ParseAddr does (a bare HOST:PORT, a final
// /v1 left off), a zero Client says its BaseURL is not set, a bad address says so, and an
// empty id is refused by name before any request is made.
func TestAddressesAndIDs(t *testing.T) {
	var requests atomic.Int32
	srv := keyServer(t, &requests)
	ctx := context.Background()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	for _, addr := range []string{srv.URL, hostPort, srv.URL + "/v1", srv.URL + "/v1/", srv.URL + "/"} {
		if k, err := New(addr).ProvenanceKey(ctx); err != nil || k.Fingerprint != "f" {
			t.Errorf("New(%q): %+v, %v", addr, k, err)
		}
		if k, err := (&Client{BaseURL: addr}).ProvenanceKey(ctx); err != nil || k.Fingerprint != "f" {
			t.Errorf("Client{BaseURL: %q}: %+v, %v", addr, k, err)
		}
	}
	requests.Store(0)
	for c, want := range map[*Client]string{
		{}:                          "client: BaseURL is not set",
		New("ftp://" + hostPort):    `client: BaseURL "ftp://` + hostPort + `" is not a host address: scheme "ftp"`,
		{BaseURL: "http://h:99999"}: "port 99999 is not between 1 and 65535",
		New("http://h?x=1"):         "a query or fragment has no place in it",
	} {
		if _, err := c.ProvenanceKey(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("BaseURL %q: %v; want %q", c.BaseURL, err, want)
		}
	}
	c := New(srv.URL)
	for want, call := range map[string]func() error{
		"client: GetSession: id is empty":            func() error { _, err := c.GetSession(ctx, ""); return err },
		"client: DeleteSession: id is empty":         func() error { _, err := c.DeleteSession(ctx, ""); return err },
		"client: Execute: sessionID is empty":        func() error { _, err := c.Execute(ctx, "", ExecuteRequest{}); return err },
		"client: ExecuteStream: sessionID is empty":  func() error { _, err := c.ExecuteStream(ctx, "", ExecuteRequest{}, nil); return err },
		"client: CreateTrace: sessionID is empty":    func() error { _, err := c.CreateTrace(ctx, "", nil); return err },
		"client: GetTrace: id is empty":              func() error { _, err := c.GetTrace(ctx, ""); return err },
		"client: ListTraces: sessionID is empty":     func() error { _, err := c.ListTraces(ctx, "", 0, ""); return err },
		"client: AppendProvenance: traceID is empty": func() error { _, err := c.AppendProvenance(ctx, "", "k", "a", nil); return err },
		"client: VerifyProvenance: traceID is empty": func() error { _, err := c.VerifyProvenance(ctx, ""); return err },
		"client: Merge: traceID is empty":            func() error { _, err := c.Merge(ctx, ""); return err },
	} {
		if err := call(); err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests were made with no address or an empty id", n)
	}
}

// TestLargeProblemRead: a problem document of several MiB (that of an execution whose
// record is pending carries its outputs) is read whole: its members, record_pending and
// trace_id above all, are not lost with a cut-off body.
func TestLargeProblemRead(t *testing.T) {
	out := strings.Repeat("y", 6<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"title": "Service Unavailable", "status": 503, "detail": "the outcome is not stored yet",
			"record_pending": true, "trace_id": "01TRACE", "stdout": out,
		})
	}))
	defer srv.Close()
	_, err := New(srv.URL).Execute(context.Background(), "s1", ExecuteRequest{Runner: "python", Input: "print()"})
	var e *Error
	if !errors.As(err, &e) || string(e.Extra["record_pending"]) != "true" || string(e.Extra["trace_id"]) != `"01TRACE"` || string(e.Extra["stdout"]) != `"`+out+`"` {
		t.Fatalf("a 6 MiB problem: %.200v (extra members %d)", err, len(e.Extra))
	}
}

// keyServer answers GET /v1/provenance/key with the key "k" of fingerprint "f", and any
// other path 404 as the API does; it counts the requests in n when n is not nil.
func keyServer(t *testing.T, n *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n != nil {
			n.Add(1)
		}
		if r.URL.Path != "/v1/provenance/key" {
			problem(w, r, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"public_key_pem":"k","fingerprint":"f"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}
