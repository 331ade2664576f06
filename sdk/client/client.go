// Package client is the Go client of the LIMIT host REST API.
//
//	c := client.New("http://127.0.0.1:8080")
//	s, err := c.CreateSession(ctx, client.CreateSessionRequest{Name: "demo"})
//	res, err := c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(1)"})
//
// Errors from the API come back as *Error, which carries the RFC 9457 problem.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one host.
type Client struct {
	// BaseURL is the host's address, e.g. http://127.0.0.1:8080 (a final slash is ignored).
	BaseURL string
	// HTTP is the HTTP client; http.DefaultClient when nil.
	HTTP *http.Client
	// Token, if set, is sent as "Authorization: Bearer <Token>" (a host with
	// api.token_file answers 401 without it).
	Token string
}

// New returns a client of the host at baseURL. Its HTTP client keeps up to
// MaxIdleConnsPerHost connections to the host open for reuse (Go's default keeps two, so
// a program making many concurrent calls would open and close a connection per call). It
// sets no overall timeout, as an execution may run long: bound each call with its context.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Transport: newTransport()}}
}

// MaxIdleConnsPerHost is how many idle connections to the host a Client made by New keeps.
const MaxIdleConnsPerHost = 256

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = MaxIdleConnsPerHost
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	return t
}

// Error is a problem the API answered (RFC 9457).
type Error struct {
	Status int
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// RequestID is the X-Request-Id of the failed request.
	RequestID string
	// Extra holds the problem's other members (flags, reasons, trace_id, ...).
	Extra map[string]json.RawMessage
	// RetryAfter is the Retry-After the server sent, if any.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Title, e.Detail)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Title)
}

// StatusOf returns the HTTP status of an API error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func readError(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	e := &Error{Status: res.StatusCode, Title: http.StatusText(res.StatusCode), RequestID: res.Header.Get("X-Request-Id")}
	e.decodeProblem(b)
	if s := res.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			e.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	if e.Detail == "" && len(b) > 0 && !json.Valid(b) {
		e.Detail = strings.TrimSpace(string(b))
	}
	return e
}

// decodeProblem fills e from the JSON of a problem: the members RFC 9457 defines into
// their fields, every other member (trace_id, record_pending, flags, reasons, ...) into
// Extra. An answer and an execution stream's error event are decoded alike, so a caller
// reads the same Extra whichever way the problem came. A body that is not a JSON object
// leaves e as it is.
func (e *Error) decodeProblem(b []byte) {
	_ = json.Unmarshal(b, e)
	_ = json.Unmarshal(b, &e.Extra)
	for _, k := range []string{"type", "title", "status", "detail", "instance"} {
		delete(e.Extra, k)
	}
}

// closeBody reads what is left of a response body, up to 64 KiB, and closes it: read to
// its end, the connection goes back to the pool for the next call.
func closeBody(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	body.Close()
}

// orNil returns v, or nil when err is set: a failed call returns no half-made answer
// (a caller that checks the answer rather than the error must not read a zero value as
// one).
func orNil[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	res, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer closeBody(res.Body)
	if res.StatusCode >= 300 {
		return readError(res)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Health is the answer of /v1/health.
type Health struct {
	Status  string         `json:"status"`
	Version string         `json:"version"`
	Plugins []PluginStatus `json:"plugins"`
}

// PluginStatus is one plugin process.
type PluginStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Version   string `json:"version"`
	PID       int    `json:"pid"`
	Healthy   bool   `json:"healthy"`
	Restarts  int    `json:"restarts"`
	Session   string `json:"session,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt (RFC 3339) is when LastError happened: it stays after the plugin recovers.
	LastErrorAt string `json:"last_error_at,omitempty"`
	// Transport is what carries a storage, runner or governance process's frequent calls:
	// "unix" (its fast path) or "grpc".
	Transport string `json:"transport,omitempty"`
	// Isolation is what a runner process enforces for its session.
	Isolation []IsolationFeature `json:"isolation,omitempty"`
	// Detail and Metrics are what a storage backend reports of itself: why it is not
	// healthy though its process is up (a full disk), and figures such as the bytes
	// waiting in its write-ahead log.
	Detail  string             `json:"detail,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// IsolationFeature is one isolation mechanism of a runner and whether it is enforced.
type IsolationFeature struct {
	Name     string `json:"name"`
	Enforced bool   `json:"enforced"`
	Detail   string `json:"detail,omitempty"`
}

// Health returns the host's health. A degraded host answers 503 with the same body,
// which is returned with an *Error; any other failure (a problem the API answered, or a
// 503 without a health body) returns only an *Error.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	req, err := c.newRequest(ctx, "GET", "/v1/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer closeBody(res.Body)
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if res.StatusCode != http.StatusOK && (res.StatusCode != http.StatusServiceUnavailable || ct != "application/json") {
		return nil, readError(res)
	}
	var h Health
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("health: decode answer (HTTP %d): %w", res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK {
		return &h, &Error{Status: res.StatusCode, Title: http.StatusText(res.StatusCode), Detail: "host is " + h.Status, RequestID: res.Header.Get("X-Request-Id")}
	}
	return &h, nil
}

// Limits bound a session's executions.
type Limits struct {
	TimeoutMS      uint64 `json:"timeout_ms,omitempty"`
	MemoryBytes    uint64 `json:"memory_bytes,omitempty"`
	CPUMillis      uint64 `json:"cpu_millis,omitempty"`
	MaxProcesses   uint32 `json:"max_processes,omitempty"`
	MaxOutputBytes uint64 `json:"max_output_bytes,omitempty"`
	MaxFileBytes   uint64 `json:"max_file_bytes,omitempty"`
	MaxDiskBytes   uint64 `json:"max_disk_bytes,omitempty"`
}

// CreateSessionRequest is the body of POST /v1/sessions.
type CreateSessionRequest struct {
	Name           string   `json:"name,omitempty"`
	MaxConcurrency int      `json:"max_concurrency,omitempty"`
	AllowNetwork   bool     `json:"allow_network,omitempty"`
	Policy         string   `json:"policy,omitempty"`
	Runners        []string `json:"runners,omitempty"`
	Limits         Limits   `json:"limits,omitzero"`
	// Owner creates the session for that user (a user name of the host's token file):
	// only an operator's token may name another user than its own; a user's token
	// makes its sessions its user's without it.
	Owner string `json:"owner,omitempty"`
}

// Session is a session's record.
type Session struct {
	ID             string    `json:"id"`
	Tenant         string    `json:"tenant"`
	Name           string    `json:"name"`
	MaxConcurrency int       `json:"max_concurrency"`
	AllowNetwork   bool      `json:"allow_network"`
	Policy         string    `json:"policy"`
	Runners        []string  `json:"runners"`
	Limits         Limits    `json:"limits"`
	CreatedAt      time.Time `json:"created_at"`
	State          string    `json:"state"`
	// DeletedAt is when a deleted session was deleted (GetSession and DeleteSession return
	// it; ListSessions lists only sessions not deleted).
	DeletedAt time.Time `json:"deleted_at,omitzero"`
	// OwnerNode is the host node that runs the session's processes.
	OwnerNode string `json:"owner_node"`
	// Owner is the user the session belongs to; "" for an operators' session. Only that
	// user's tokens and operators' reach it.
	Owner string `json:"owner,omitempty"`
	// Spent is what the session has spent with each runner that keeps a per-session
	// budget, by runner name, then by figure ("session_tokens", "session_cost_usd"): it
	// outlives the session's runner processes and daemon restarts.
	Spent map[string]map[string]float64 `json:"spent,omitempty"`
}

// CreateSession creates a session.
func (c *Client) CreateSession(ctx context.Context, req CreateSessionRequest) (*Session, error) {
	var s Session
	return orNil(&s, c.do(ctx, "POST", "/v1/sessions", req, &s))
}

// SessionList is one page of sessions.
type SessionList struct {
	Sessions  []Session `json:"sessions"`
	NextToken string    `json:"next_token"`
}

// ListSessions returns one page of the sessions not deleted that the token reaches: with
// a user's token, that user's; with an operator's, every one.
func (c *Client) ListSessions(ctx context.Context, perPage int, nextToken string) (*SessionList, error) {
	return c.ListSessionsOf(ctx, "", perPage, nextToken)
}

// ListSessionsOf is ListSessions of the sessions of the user owner alone ("" for every
// session the token reaches). With a user's token, owner must be that user's or "".
func (c *Client) ListSessionsOf(ctx context.Context, owner string, perPage int, nextToken string) (*SessionList, error) {
	q := url.Values{}
	if owner != "" {
		q.Set("owner", owner)
	}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	if nextToken != "" {
		q.Set("next_token", nextToken)
	}
	var l SessionList
	return orNil(&l, c.do(ctx, "GET", "/v1/sessions?"+q.Encode(), nil, &l))
}

// GetSession returns a session.
func (c *Client) GetSession(ctx context.Context, id string) (*Session, error) {
	var s Session
	return orNil(&s, c.do(ctx, "GET", "/v1/sessions/"+url.PathEscape(id), nil, &s))
}

// DeleteSession stops a session's runner processes; its traces stay.
func (c *Client) DeleteSession(ctx context.Context, id string) (*Session, error) {
	var s Session
	return orNil(&s, c.do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, &s))
}

// ExecuteRequest is the body of POST /v1/sessions/{id}/executions.
type ExecuteRequest struct {
	Runner    string         `json:"runner"`
	Input     string         `json:"input"`
	TimeoutMS uint64         `json:"timeout_ms,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
}

// Usage is what an execution consumed.
type Usage struct {
	PromptTokens     uint64             `json:"prompt_tokens,omitempty"`
	CompletionTokens uint64             `json:"completion_tokens,omitempty"`
	TotalTokens      uint64             `json:"total_tokens,omitempty"`
	PeakMemoryBytes  uint64             `json:"peak_memory_bytes,omitempty"`
	CPUTimeMS        uint64             `json:"cpu_time_ms,omitempty"`
	Extra            map[string]float64 `json:"extra,omitempty"`
}

// Flag is a governance flag on a trace.
type Flag struct {
	Flag         string    `json:"flag"`
	Severity     int       `json:"severity"`
	Reason       string    `json:"reason"`
	RuleID       string    `json:"rule_id"`
	AutoDetected bool      `json:"auto_detected"`
	Timestamp    time.Time `json:"timestamp"`
	// Stage is when the rule that raised the flag ran: "pre" on the execution's input,
	// "post" on its output; empty for a flag set by hand (or by an older host).
	Stage string `json:"stage,omitempty"`
	// Score is how sure the rule was, in the rule's own scale; 0 when it gave none.
	Score float64 `json:"score,omitempty"`
	// Location is where in the evaluated content (the input at "pre", the output at
	// "post") the rule matched; nil when it did not say.
	Location *Location `json:"location,omitempty"`
}

// Location points into the content a rule evaluated. Line and Column are 1-based, 0 when
// not given (Column counts bytes); Start and End are byte offsets of the matched span
// [Start, End), a span only when End > Start.
type Location struct {
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	Start  int `json:"start"`
	End    int `json:"end"`
}

// String describes the location as "line 4:7, bytes 12-40", leaving out what it lacks.
func (l Location) String() string {
	var parts []string
	if l.Line > 0 {
		s := "line " + strconv.Itoa(l.Line)
		if l.Column > 0 {
			s += ":" + strconv.Itoa(l.Column)
		}
		parts = append(parts, s)
	}
	if l.End > l.Start {
		parts = append(parts, "bytes "+strconv.Itoa(l.Start)+"-"+strconv.Itoa(l.End))
	}
	return strings.Join(parts, ", ")
}

// ExecutionResult is an execution's answer.
type ExecutionResult struct {
	TraceID      string `json:"trace_id"`
	Status       string `json:"status"`
	Stdout       string `json:"stdout"`
	Stderr       string `json:"stderr"`
	Output       string `json:"output"`
	ExitCode     int    `json:"exit_code"`
	Error        string `json:"error,omitempty"`
	Usage        Usage  `json:"usage"`
	DurationMS   int64  `json:"duration_ms"`
	DurationUS   int64  `json:"duration_us"`
	Flags        []Flag `json:"flags"`
	StateReset   bool   `json:"state_reset,omitempty"`
	Truncated    bool   `json:"truncated,omitempty"`
	FinishReason string `json:"finish_reason,omitempty"`
}

// Execute runs an execution and returns its result.
func (c *Client) Execute(ctx context.Context, sessionID string, req ExecuteRequest) (*ExecutionResult, error) {
	var r ExecutionResult
	return orNil(&r, c.do(ctx, "POST", "/v1/sessions/"+url.PathEscape(sessionID)+"/executions", req, &r))
}

// Event is one streamed piece of output: Kind is "stdout", "stderr" or "token".
type Event struct {
	Kind string
	Data string
}

// ExecuteStream runs an execution with server-sent events, calling onEvent for each piece
// of output as it comes, and returns the final result. onEvent runs on the caller's
// goroutine and the stream is not read meanwhile: a host whose events wait unread for
// some seconds counts the client as gone and ends the execution.
func (c *Client) ExecuteStream(ctx context.Context, sessionID string, req ExecuteRequest, onEvent func(Event)) (*ExecutionResult, error) {
	hreq, err := c.newRequest(ctx, "POST", "/v1/sessions/"+url.PathEscape(sessionID)+"/executions", req)
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Accept", "text/event-stream")
	res, err := c.http().Do(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return nil, readError(res)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	sc.Split(sseLines())
	var name string
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if name == "" && data.Len() == 0 {
				continue
			}
			switch name {
			case "result":
				var r ExecutionResult
				if err := json.Unmarshal(data.Bytes(), &r); err != nil {
					return nil, fmt.Errorf("decode result event: %w", err)
				}
				// The stream ends with its result: read to its end, for the connection.
				closeBody(res.Body)
				return &r, nil
			case "error":
				e := &Error{Status: http.StatusInternalServerError, Title: "Execution failed", RequestID: res.Header.Get("X-Request-Id")}
				e.decodeProblem(data.Bytes())
				// The host sends the problem the answer would have been: its status, and
				// retry_after (seconds) for a failure worth retrying, which stands for
				// the answer's Retry-After header and so is not left in Extra.
				var more struct {
					RetryAfter int `json:"retry_after"`
				}
				if json.Unmarshal(data.Bytes(), &more) == nil && more.RetryAfter > 0 {
					e.RetryAfter = time.Duration(more.RetryAfter) * time.Second
				}
				delete(e.Extra, "retry_after")
				closeBody(res.Body)
				return nil, e
			default:
				var ev struct {
					Data string `json:"data"`
				}
				if err := json.Unmarshal(data.Bytes(), &ev); err == nil && onEvent != nil {
					onEvent(Event{Kind: name, Data: ev.Data})
				}
			}
			name = ""
			data.Reset()
		case strings.HasPrefix(line, "event:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read event stream: %w", ErrStreamLost, err)
	}
	return nil, fmt.Errorf("%w: event stream ended without a result", ErrStreamLost)
}

// ErrStreamLost marks an event stream of ExecuteStream that broke off (the connection
// lost, the host gone) after the execution had begun and before its result: the
// execution may have run, and its trace may be stored.
var ErrStreamLost = errors.New("execution stream lost")

// sseLines returns a split function for bufio.Scanner that yields the lines of an event
// stream, which end in CRLF, LF or CR alone. A line ending in CR is yielded at once; an
// LF that comes next, in the same read or the next, is part of its line end. The LF is
// skipped together with the line after it: a Scanner that has seen the end of its input
// stops at the first call that yields no token, even one that advanced, so a body whose
// last read held a CRLF's LF and more lines lost those lines.
func sseLines() bufio.SplitFunc {
	afterCR := false
	return func(data []byte, atEOF bool) (int, []byte, error) {
		skip := 0
		if afterCR && len(data) > 0 {
			afterCR = false
			if data[0] == '\n' {
				skip = 1
			}
		}
		line := data[skip:]
		end := len(line)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			end = i
		}
		if i := bytes.IndexByte(line[:end], '\r'); i >= 0 {
			end = i
		}
		switch {
		case end == len(line):
			if atEOF && len(line) > 0 {
				return len(data), line, nil
			}
			return skip, nil, nil // more to read (at the end of input, nothing is left)
		case line[end] == '\r' && end+1 == len(line):
			afterCR = true
		case line[end] == '\r' && line[end+1] == '\n':
			return skip + end + 2, line[:end], nil
		}
		return skip + end + 1, line[:end], nil
	}
}

// Trace is a trace record.
type Trace struct {
	ID        string          `json:"id"`
	SessionID string          `json:"session_id"`
	Tenant    string          `json:"tenant"`
	Kind      string          `json:"kind"`
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	Flags     []Flag          `json:"flags"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	Length    int64           `json:"provenance_length"`
	Head      string          `json:"provenance_head"`
}

// Entry is one provenance entry.
type Entry struct {
	TraceID   string          `json:"trace_id"`
	SessionID string          `json:"session_id"`
	Index     int64           `json:"index"`
	Kind      string          `json:"kind"`
	Agent     string          `json:"agent"`
	Data      json.RawMessage `json:"data"`
	Timestamp time.Time       `json:"timestamp"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// TraceView is a trace with its provenance chain.
type TraceView struct {
	Trace
	Provenance []Entry `json:"provenance"`
}

// CreateTrace creates a trace in a session with data, which must encode as a JSON object
// (a map or a struct; nil stands for {}): the host refuses any other JSON value.
func (c *Client) CreateTrace(ctx context.Context, sessionID string, data any) (*Trace, error) {
	var t Trace
	return orNil(&t, c.do(ctx, "POST", "/v1/traces", map[string]any{"session_id": sessionID, "data": data}, &t))
}

// GetTrace returns a trace with its provenance chain.
func (c *Client) GetTrace(ctx context.Context, id string) (*TraceView, error) {
	var t TraceView
	return orNil(&t, c.do(ctx, "GET", "/v1/traces/"+url.PathEscape(id), nil, &t))
}

// TraceList is one page of traces.
type TraceList struct {
	Traces    []Trace `json:"traces"`
	NextToken string  `json:"next_token"`
}

// ListTraces returns one page of a session's traces.
func (c *Client) ListTraces(ctx context.Context, sessionID string, perPage int, nextToken string) (*TraceList, error) {
	q := url.Values{}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	if nextToken != "" {
		q.Set("next_token", nextToken)
	}
	var l TraceList
	return orNil(&l, c.do(ctx, "GET", "/v1/sessions/"+url.PathEscape(sessionID)+"/traces?"+q.Encode(), nil, &l))
}

// ListMerged returns one page of the shared, merged record.
func (c *Client) ListMerged(ctx context.Context, perPage int, nextToken string) (*TraceList, error) {
	q := url.Values{}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	if nextToken != "" {
		q.Set("next_token", nextToken)
	}
	var l TraceList
	return orNil(&l, c.do(ctx, "GET", "/v1/merged?"+q.Encode(), nil, &l))
}

// AppendProvenance appends an entry to a trace's chain.
func (c *Client) AppendProvenance(ctx context.Context, traceID, kind, agent string, data any) (*Entry, error) {
	var e Entry
	return orNil(&e, c.do(ctx, "POST", "/v1/traces/"+url.PathEscape(traceID)+"/provenance", map[string]any{"kind": kind, "agent": agent, "data": data}, &e))
}

// Verification is the answer of the provenance verify route.
type Verification struct {
	Valid        bool   `json:"valid"`
	Length       int64  `json:"length"`
	Head         string `json:"head"`
	SignedLength int64  `json:"signed_length"`
	Error        string `json:"error"`
}

// VerifyProvenance checks a trace's chain on the host.
func (c *Client) VerifyProvenance(ctx context.Context, traceID string) (*Verification, error) {
	var v Verification
	return orNil(&v, c.do(ctx, "GET", "/v1/traces/"+url.PathEscape(traceID)+"/provenance/verify", nil, &v))
}

// MergeResult is the answer of a merge that was allowed.
type MergeResult struct {
	Merged  bool   `json:"merged"`
	TraceID string `json:"trace_id"`
	Trace   Trace  `json:"trace"`
}

// Merge merges a trace into the shared record; a refusal is an *Error with status 409
// whose Extra["reasons"] lists why.
func (c *Client) Merge(ctx context.Context, traceID string) (*MergeResult, error) {
	var m MergeResult
	return orNil(&m, c.do(ctx, "POST", "/v1/traces/"+url.PathEscape(traceID)+"/merge", nil, &m))
}

// FlagRequest is the body of POST /v1/governance/flag.
type FlagRequest struct {
	TraceID  string `json:"trace_id"`
	Flag     string `json:"flag"`
	Reason   string `json:"reason"`
	Severity int    `json:"severity"`
	// Location optionally points at what is flagged in the trace's content (a line, a
	// byte span or both); the host refuses one that gives neither.
	Location *Location `json:"location,omitempty"`
}

// Flag flags a trace by hand and returns the updated trace.
func (c *Client) Flag(ctx context.Context, req FlagRequest) (*Trace, error) {
	var t Trace
	return orNil(&t, c.do(ctx, "POST", "/v1/governance/flag", req, &t))
}

// Stats are governance counts.
type Stats struct {
	Flags         int            `json:"flags"`
	ByFlag        map[string]int `json:"by_flag"`
	BySeverity    map[string]int `json:"by_severity"`
	Quarantined   int            `json:"quarantined"`
	MergesAllowed int            `json:"merges_allowed"`
	MergesRefused int            `json:"merges_refused"`
	// MergesWithdrawn counts merged traces taken out of the shared record by a later flag.
	MergesWithdrawn   int `json:"merges_withdrawn"`
	ExecutionsBlocked int `json:"executions_blocked"`
}

// GovernanceStats are counts overall and per session.
type GovernanceStats struct {
	Overall  Stats            `json:"overall"`
	Sessions map[string]Stats `json:"sessions"`
	// NextToken, in a page the API answers, continues the listing; GovernanceStats
	// follows it to the end.
	NextToken string `json:"next_token,omitempty"`
}

// GovernanceStats returns governance counts: every session's and their sum, read a page
// of sessions at a time (the API answers a page and its sum).
func (c *Client) GovernanceStats(ctx context.Context) (*GovernanceStats, error) {
	all := &GovernanceStats{Sessions: map[string]Stats{}}
	token := ""
	for {
		q := url.Values{"per_page": {"1000"}}
		if token != "" {
			q.Set("next_token", token)
		}
		var page GovernanceStats
		if err := c.do(ctx, "GET", "/v1/governance/stats?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all.Overall.add(page.Overall)
		for id, st := range page.Sessions {
			all.Sessions[id] = st
		}
		if page.NextToken == "" || page.NextToken == token {
			return all, nil
		}
		token = page.NextToken
	}
}

// add adds o to s.
func (s *Stats) add(o Stats) {
	s.Flags += o.Flags
	s.Quarantined += o.Quarantined
	s.MergesAllowed += o.MergesAllowed
	s.MergesRefused += o.MergesRefused
	s.MergesWithdrawn += o.MergesWithdrawn
	s.ExecutionsBlocked += o.ExecutionsBlocked
	for _, m := range []struct {
		to   *map[string]int
		from map[string]int
	}{{&s.ByFlag, o.ByFlag}, {&s.BySeverity, o.BySeverity}} {
		if *m.to == nil {
			*m.to = map[string]int{}
		}
		for k, n := range m.from {
			(*m.to)[k] += n
		}
	}
}

// Evaluation is the answer of POST /v1/governance/evaluate.
type Evaluation struct {
	Findings []Flag `json:"findings"`
	// Scores are what the rules' models made of the text, flagged or not, by configured
	// rule name and rule id (e.g. Scores["jailbreak"]["jailbreak.model"]).
	Scores map[string]map[string]float64 `json:"scores,omitempty"`
	// Rules are the rule plugins that evaluated the text (a rule that does not read its
	// kind of content, such as a rule for Python code given a prompt, is not sent it),
	// and what each evaluates.
	Rules  []RuleInfo `json:"rules,omitempty"`
	Errors []string   `json:"errors,omitempty"`
}

// RuleInfo is a configured rule plugin and the rules it evaluates.
type RuleInfo struct {
	Plugin string            `json:"plugin"`
	Rules  []RuleDescription `json:"rules"`
}

// RuleDescription is one rule: its id, the flags it raises, the stages it runs at (1
// before an execution, 2 after) and the content types and runners it reads (none: all).
type RuleDescription struct {
	ID           string   `json:"id"`
	Flags        []string `json:"flags"`
	Stages       []int    `json:"stages"`
	Description  string   `json:"description,omitempty"`
	ContentTypes []string `json:"content_types,omitempty"`
	Runners      []string `json:"runners,omitempty"`
}

// Evaluate runs the configured rules that read its kind of text ("prompt", "code" or
// "output") on a text.
func (c *Client) Evaluate(ctx context.Context, kind, text string) (*Evaluation, error) {
	return c.EvaluateAt(ctx, kind, text, "")
}

// EvaluateAt is Evaluate with the rules judging at a preset's sensitivity ("permissive",
// "default" or "strict"; "" for their configured one), to measure them.
func (c *Client) EvaluateAt(ctx context.Context, kind, text, preset string) (*Evaluation, error) {
	var e Evaluation
	body := map[string]any{"kind": kind, "text": text}
	if preset != "" {
		body["preset"] = preset
	}
	return orNil(&e, c.do(ctx, "POST", "/v1/governance/evaluate", body, &e))
}

// ExportRequest selects what to export: a session's traces or a list of traces.
type ExportRequest struct {
	SessionID string   `json:"session_id,omitempty"`
	TraceIDs  []string `json:"trace_ids,omitempty"`
}

// Export writes a bundle (gzip'd tar) of traces and their provenance to w; verify it
// offline with `limitctl verify`.
func (c *Client) Export(ctx context.Context, req ExportRequest, w io.Writer) error {
	hreq, err := c.newRequest(ctx, "POST", "/v1/artifacts/export", req)
	if err != nil {
		return err
	}
	hreq.Header.Set("Accept", "application/gzip")
	res, err := c.http().Do(hreq)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return readError(res)
	}
	_, err = io.Copy(w, res.Body)
	return err
}

// ProvenanceKey is the host's provenance signing key: its public half and fingerprint.
type ProvenanceKey struct {
	PublicKeyPEM string `json:"public_key_pem"`
	Fingerprint  string `json:"fingerprint"`
}

// ProvenanceKey returns the host's provenance public key, for `limitctl verify --key`.
func (c *Client) ProvenanceKey(ctx context.Context) (*ProvenanceKey, error) {
	var k ProvenanceKey
	return orNil(&k, c.do(ctx, "GET", "/v1/provenance/key", nil, &k))
}
