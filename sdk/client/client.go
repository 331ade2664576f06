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
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Client talks to one host. Make it with New or FromEnv; a Client set up by hand needs
// BaseURL.
type Client struct {
	// BaseURL is the host's address, read as ParseAddr reads it: http://127.0.0.1:8080,
	// https://host/prefix, or a bare HOST:PORT. A final slash and a final /v1 (the API's
	// prefix, which the client adds to every path) are ignored. A call with a BaseURL not
	// set or not an address fails before any request, saying so.
	BaseURL string
	// HTTP is the HTTP client; http.DefaultClient when nil.
	HTTP *http.Client
	// Token, if set, is sent as "Authorization: Bearer <Token>" (a host with
	// api.token_file answers 401 without it).
	Token string
}

// New returns a client of the host at baseURL, an address as ParseAddr reads it
// ("http://127.0.0.1:8080", "127.0.0.1:8080", "https://proxy/limit"; a final /v1 is taken
// off). An address that is not one is kept as given, and every call of the client fails
// with why, before any request. Its HTTP client keeps up to MaxIdleConnsPerHost
// connections to the host open for reuse (Go's default keeps two, so a program making
// many concurrent calls would open and close a connection per call). It sets no overall
// timeout, as an execution may run long: bound each call with its context.
func New(baseURL string) *Client {
	c := &Client{BaseURL: baseURL, HTTP: &http.Client{Transport: newTransport()}}
	if u, err := c.baseURL(); err == nil {
		c.BaseURL = u
	}
	return c
}

// baseURL returns the URL the API's paths (/v1/...) are added to, read from c.BaseURL.
func (c *Client) baseURL() (string, error) {
	if c.BaseURL == "" {
		return "", errors.New("client: BaseURL is not set: make the client with New or FromEnv, or set BaseURL to the host's address (http://HOST:PORT)")
	}
	u, err := ParseAddr(c.BaseURL)
	if err != nil {
		return "", fmt.Errorf("client: BaseURL %q is not a host address: %v; want http://HOST:PORT, https://HOST:PORT or HOST:PORT", c.BaseURL, err)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// needID refuses an empty id before a request is made: sent, it would ask for another
// route ("/v1/sessions/" lists no session) and come back as a puzzling 404 or 405.
// method and arg name the call and its argument in the error.
func needID(method, arg, id string) error {
	if id == "" {
		return fmt.Errorf("client: %s: %s is empty", method, arg)
	}
	return nil
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
	// Status is the answer's HTTP status. The problem's own "status" member is advisory
	// (RFC 9457 §3.1.2) and a proxy may answer another status than it says, so it does not
	// override the HTTP status; only for an execution stream's error event, whose HTTP
	// status was 200 when the stream began, is Status the member's.
	Status int
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Instance is the problem's "instance" member: the request path it is about.
	Instance string `json:"instance,omitempty"`
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
	base, err := c.baseURL()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
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

// maxErrorBytes bounds the body of an error answer read, maxProblemBytes that of a
// problem document (application/problem+json): the problem of an execution whose record
// is pending carries its outputs, megabytes of them, which the caller has nowhere else
// (an event stream's lines are bounded alike). maxPlainDetail bounds the part of a body
// that is not a problem (a proxy's HTML page) kept as an Error's Detail.
const (
	maxErrorBytes   = 1 << 20
	maxProblemBytes = 64 << 20
	maxPlainDetail  = 300
)

func readError(res *http.Response) error {
	limit := maxErrorBytes
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt == "application/problem+json" {
		limit = maxProblemBytes
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, int64(limit)+1))
	more := len(b) > limit
	b = b[:min(len(b), limit)]
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
		e.Detail = plainDetail(b, more)
	}
	return e
}

// plainDetail is the Detail of an error answer b that is not a problem: its text, cut to
// maxPlainDetail bytes (at a character's start) with a note of the body's length, so that
// a proxy's page of 100 KB does not become an error message of 100 KB. more says the body
// went on past b.
func plainDetail(b []byte, more bool) string {
	s := strings.TrimSpace(string(b))
	if len(s) <= maxPlainDetail && !more {
		return s
	}
	cut := min(len(s), maxPlainDetail)
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if more {
		return fmt.Sprintf("%s… (more than %d bytes)", s[:cut], len(b))
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(b))
}

// decodeProblem fills e from the JSON of a problem: the members RFC 9457 defines into
// their fields, every other member (trace_id, record_pending, flags, reasons, ...) into
// Extra, and returns its "status" member (0 when none), which it leaves to the caller to
// take or not (see Error.Status). An answer and an execution stream's error event are
// decoded alike, so a caller reads the same Error whichever way the problem came. A body
// that is not a JSON object leaves e as it is.
func (e *Error) decodeProblem(b []byte) (status int) {
	var p struct {
		Type     string `json:"type"`
		Title    string `json:"title"`
		Status   int    `json:"status"`
		Detail   string `json:"detail"`
		Instance string `json:"instance"`
	}
	_ = json.Unmarshal(b, &p)
	for _, f := range []struct {
		to   *string
		from string
	}{{&e.Type, p.Type}, {&e.Title, p.Title}, {&e.Detail, p.Detail}, {&e.Instance, p.Instance}} {
		if f.from != "" {
			*f.to = f.from
		}
	}
	_ = json.Unmarshal(b, &e.Extra)
	for _, k := range []string{"type", "title", "status", "detail", "instance"} {
		delete(e.Extra, k)
	}
	return p.Status
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
	res, err := c.send(req)
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
	res, err := c.send(req)
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
	return c.ListSessionsWith(ctx, SessionQuery{PerPage: perPage, NextToken: nextToken})
}

// ListSessionsOf is ListSessions of the sessions of the user owner alone ("" for every
// session the token reaches). With a user's token, owner must be that user's or "".
func (c *Client) ListSessionsOf(ctx context.Context, owner string, perPage int, nextToken string) (*SessionList, error) {
	return c.ListSessionsWith(ctx, SessionQuery{Owner: owner, PerPage: perPage, NextToken: nextToken})
}

// SessionQuery selects a page of sessions for ListSessionsWith.
type SessionQuery struct {
	// Owner lists the sessions of that user alone ("" for every session the token
	// reaches); with a user's token, it must be that user's or "".
	Owner string
	// IncludeDeleted lists deleted sessions too.
	IncludeDeleted bool
	// PerPage is the page's size (0 for the host's default, 50); NextToken continues
	// from the page whose SessionList.NextToken it is.
	PerPage   int
	NextToken string
}

// ListSessionsWith returns the page of sessions q selects.
func (c *Client) ListSessionsWith(ctx context.Context, q SessionQuery) (*SessionList, error) {
	v := url.Values{}
	if q.Owner != "" {
		v.Set("owner", q.Owner)
	}
	if q.IncludeDeleted {
		v.Set("include_deleted", "true")
	}
	if q.PerPage > 0 {
		v.Set("per_page", strconv.Itoa(q.PerPage))
	}
	if q.NextToken != "" {
		v.Set("next_token", q.NextToken)
	}
	var l SessionList
	return orNil(&l, c.do(ctx, "GET", "/v1/sessions?"+v.Encode(), nil, &l))
}

// GetSession returns a session.
func (c *Client) GetSession(ctx context.Context, id string) (*Session, error) {
	if err := needID("GetSession", "id", id); err != nil {
		return nil, err
	}
	var s Session
	return orNil(&s, c.do(ctx, "GET", "/v1/sessions/"+url.PathEscape(id), nil, &s))
}

// DeleteSession stops a session's runner processes; its traces stay.
func (c *Client) DeleteSession(ctx context.Context, id string) (*Session, error) {
	if err := needID("DeleteSession", "id", id); err != nil {
		return nil, err
	}
	var s Session
	return orNil(&s, c.do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, &s))
}

// DeleteSessionOwnerGone deletes, through this host, a session another host runs (its
// OwnerNode), that host gone for good (DELETE /v1/sessions/{id}?owner_gone=true; an
// operator's token). The gone host's files of it stay on its disk; a host that is in fact
// alive runs the session on until it restarts. DeleteSession of such a session answers
// 409 with owner_node in Extra.
func (c *Client) DeleteSessionOwnerGone(ctx context.Context, id string) (*Session, error) {
	if err := needID("DeleteSessionOwnerGone", "id", id); err != nil {
		return nil, err
	}
	var s Session
	return orNil(&s, c.do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id)+"?owner_gone=true", nil, &s))
}

// SettleResult is the answer of SettleNode.
type SettleResult struct {
	// Node is the node settled; Settled how many of its executions were recorded as
	// interrupted.
	Node    string `json:"node"`
	Settled int    `json:"settled"`
}

// SettleNode records as interrupted the executions a host (node) gone for good left
// running, as that host's own restart would (POST /v1/nodes/{node}/settle; an operator's
// token, on another host). Outcomes of a node settled while it was in fact alive are not
// recorded. A node the storage holds nothing of (no key record, no execution left
// running: a mistyped id) is an *Error with status 404.
func (c *Client) SettleNode(ctx context.Context, node string) (*SettleResult, error) {
	if err := needID("SettleNode", "node", node); err != nil {
		return nil, err
	}
	var r SettleResult
	return orNil(&r, c.do(ctx, "POST", "/v1/nodes/"+url.PathEscape(node)+"/settle", nil, &r))
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
	// SetBy is who set a flag by hand ("operator", "user:NAME"); empty for a rule's.
	SetBy string `json:"set_by,omitempty"`
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
	// TraceID names the execution's trace.
	TraceID string `json:"trace_id"`
	// Status is how the execution ended: "ok", "error" (the program failed: ExitCode and
	// Error say how), "timeout", "cancelled" or "limit_exceeded" (a runner's budget spent).
	// An execution that ran answers with a nil error whatever its Status.
	Status     string `json:"status"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Output     string `json:"output"`
	ExitCode   int    `json:"exit_code"`
	Error      string `json:"error,omitempty"`
	Usage      Usage  `json:"usage"`
	DurationMS int64  `json:"duration_ms"`
	DurationUS int64  `json:"duration_us"`
	Flags      []Flag `json:"flags"`
	StateReset bool   `json:"state_reset,omitempty"`
	Truncated  bool   `json:"truncated,omitempty"`
	// FinishReason is the runner's word for why the execution ended, when it gives one:
	// "completed", "exit", "timeout", "cancelled", "memory_limit", "file_size_limit"
	// (Python), "stop", "length" (LLM); other runners choose their own.
	FinishReason string `json:"finish_reason,omitempty"`
}

// Execute runs an execution and returns its result; a program that failed, timed out or
// was cancelled is a result with that Status and a nil error. Execute is not idempotent:
// see the package documentation before retrying it.
func (c *Client) Execute(ctx context.Context, sessionID string, req ExecuteRequest) (*ExecutionResult, error) {
	if err := needID("Execute", "sessionID", sessionID); err != nil {
		return nil, err
	}
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
// some seconds counts the client as gone and ends the execution. An answer that comes as
// one JSON result instead of a stream (a proxy between dropped the Accept header) gives
// that result, with no events; an answer of any other type is an error saying what came
// (the execution may have run: its trace shows it).
func (c *Client) ExecuteStream(ctx context.Context, sessionID string, req ExecuteRequest, onEvent func(Event)) (*ExecutionResult, error) {
	if err := needID("ExecuteStream", "sessionID", sessionID); err != nil {
		return nil, err
	}
	hreq, err := c.newRequest(ctx, "POST", "/v1/sessions/"+url.PathEscape(sessionID)+"/executions", req)
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Accept", "text/event-stream")
	res, err := c.send(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return nil, readError(res)
	}
	// A proxy that drops the Accept header gets the whole result as JSON, at the end; any
	// other answer is not one this call can read.
	switch ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); ct {
	case "text/event-stream":
	case "application/json":
		var r ExecutionResult
		if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
			return nil, fmt.Errorf("execute: decode the JSON answer that came instead of an event stream: %w", err)
		}
		closeBody(res.Body)
		return &r, nil
	default:
		closeBody(res.Body)
		return nil, fmt.Errorf("execute: the host answered HTTP %d with Content-Type %q, not an event stream (text/event-stream): a proxy between may have changed the answer; the execution may have run (its trace shows it)",
			res.StatusCode, res.Header.Get("Content-Type"))
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
				// The stream's HTTP status was 200: the problem's own says what the
				// answer's would have been.
				if st := e.decodeProblem(data.Bytes()); st >= 400 && st <= 599 {
					e.Status = st
				}
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
	if err := needID("CreateTrace", "sessionID", sessionID); err != nil {
		return nil, err
	}
	var t Trace
	return orNil(&t, c.do(ctx, "POST", "/v1/traces", map[string]any{"session_id": sessionID, "data": data}, &t))
}

// GetTrace returns a trace with its provenance chain.
func (c *Client) GetTrace(ctx context.Context, id string) (*TraceView, error) {
	if err := needID("GetTrace", "id", id); err != nil {
		return nil, err
	}
	var t TraceView
	return orNil(&t, c.do(ctx, "GET", "/v1/traces/"+url.PathEscape(id), nil, &t))
}

// TraceList is one page of traces.
type TraceList struct {
	Traces []Trace `json:"traces"`
	// Damaged are the ids of the page's traces the host left out of Traces: their stored
	// record is damaged (verify says what is wrong).
	Damaged   []string `json:"damaged,omitempty"`
	NextToken string   `json:"next_token"`
}

// ListTraces returns one page of a session's traces.
func (c *Client) ListTraces(ctx context.Context, sessionID string, perPage int, nextToken string) (*TraceList, error) {
	if err := needID("ListTraces", "sessionID", sessionID); err != nil {
		return nil, err
	}
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
	if err := needID("AppendProvenance", "traceID", traceID); err != nil {
		return nil, err
	}
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
	// SignedBy is the fingerprint of the key that signed the latest checkpoint: the
	// host's, or another host's that it trusts (host.trusted_keys); SignerNode names that
	// other host, when storage records it.
	SignedBy   string `json:"signed_by,omitempty"`
	SignerNode string `json:"signer_node,omitempty"`
	// ForeignKey is the key of a checkpoint the host neither holds nor trusts, when that
	// is why Valid is false; ForeignNode the node storage records signing with it.
	ForeignKey  string `json:"foreign_key,omitempty"`
	ForeignNode string `json:"foreign_node,omitempty"`
}

// VerifyProvenance checks a trace's chain on the host.
func (c *Client) VerifyProvenance(ctx context.Context, traceID string) (*Verification, error) {
	if err := needID("VerifyProvenance", "traceID", traceID); err != nil {
		return nil, err
	}
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
	if err := needID("Merge", "traceID", traceID); err != nil {
		return nil, err
	}
	var m MergeResult
	return orNil(&m, c.do(ctx, "POST", "/v1/traces/"+url.PathEscape(traceID)+"/merge", nil, &m))
}

// FlagRequest is the body of POST /v1/governance/flag.
type FlagRequest struct {
	TraceID  string `json:"trace_id"`
	Flag     string `json:"flag"`
	Reason   string `json:"reason"`
	Severity int    `json:"severity"`
	// RuleID names what raised the flag (a reviewer's tool, a ticket); the host records
	// "manual" when it is empty.
	RuleID string `json:"rule_id,omitempty"`
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

// GovernanceStats returns governance counts: every session's (deleted ones included)
// and their sum, read a page of sessions at a time (the API answers a page and its sum).
func (c *Client) GovernanceStats(ctx context.Context) (*GovernanceStats, error) {
	return c.GovernanceStatsOf(ctx, StatsQuery{})
}

// StatsQuery selects the sessions whose counts GovernanceStatsOf returns: one session, or
// the sessions of one user, or ("" both) every session the token reaches.
type StatsQuery struct {
	SessionID string
	// Owner is a user name; with a user's token, it must be that user's or "".
	Owner string
}

// GovernanceStatsOf is GovernanceStats of the sessions q selects.
func (c *Client) GovernanceStatsOf(ctx context.Context, q StatsQuery) (*GovernanceStats, error) {
	all := &GovernanceStats{Sessions: map[string]Stats{}}
	token := ""
	for {
		v := url.Values{"per_page": {"1000"}}
		if q.SessionID != "" {
			v.Set("session_id", q.SessionID)
		}
		if q.Owner != "" {
			v.Set("owner", q.Owner)
		}
		if token != "" {
			v.Set("next_token", token)
		}
		var page GovernanceStats
		if err := c.do(ctx, "GET", "/v1/governance/stats?"+v.Encode(), nil, &page); err != nil {
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

// Policy is a policy preset: what blocks an execution, quarantines a trace or refuses a
// merge under it.
type Policy struct {
	Name string `json:"name"`
	// Block maps a flag to the lowest severity at which it blocks an execution; a flag
	// absent never blocks.
	Block map[string]int `json:"block"`
	// AutoQuarantine is the lowest severity of any flag that quarantines a trace; 0
	// means never.
	AutoQuarantine int `json:"auto_quarantine"`
	// MergeBlock lists the flags that refuse a merge, at any severity.
	MergeBlock []string `json:"merge_block"`
	// AllowUnverifiedMerge lets a trace whose chain verifies but lacks an entry its kind
	// requires be merged.
	AllowUnverifiedMerge bool `json:"allow_unverified_merge"`
	// FailOpen lets an execution proceed when a rule plugin cannot answer.
	FailOpen bool `json:"fail_open"`
}

// Policies returns the host's policy presets by name ("permissive", "default",
// "strict", ...).
func (c *Client) Policies(ctx context.Context) (map[string]Policy, error) {
	var p map[string]Policy
	if err := c.do(ctx, "GET", "/v1/governance/policies", nil, &p); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenAPI returns the host's OpenAPI 3.1 document (GET /v1/openapi.json), as it came.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var doc json.RawMessage
	if err := c.do(ctx, "GET", "/v1/openapi.json", nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
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
// offline with `limitctl verify`, or with VerifyBundle of
// github.com/limitgraph/limit/host/trace.
func (c *Client) Export(ctx context.Context, req ExportRequest, w io.Writer) error {
	hreq, err := c.newRequest(ctx, "POST", "/v1/artifacts/export", req)
	if err != nil {
		return err
	}
	hreq.Header.Set("Accept", "application/gzip")
	res, err := c.send(hreq)
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

// Backup is what GET /v1/backup answered before its body: the archive's file name and the
// number of storage keys it holds.
type Backup struct {
	Filename string
	Keys     int64
}

// Backup downloads an online backup of the host (operators only) into w: a gzip-compressed
// tar archive that `limitd -restore` reads. It holds the host's private provenance key:
// keep it as a secret. The host copies the storage before it sends the first byte, which
// may take a while on a large storage.
func (c *Client) Backup(ctx context.Context, w io.Writer) (Backup, int64, error) {
	var b Backup
	hreq, err := c.newRequest(ctx, "GET", "/v1/backup", nil)
	if err != nil {
		return b, 0, err
	}
	hreq.Header.Set("Accept", "application/gzip")
	res, err := c.send(hreq)
	if err != nil {
		return b, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return b, 0, readError(res)
	}
	if _, params, err := mime.ParseMediaType(res.Header.Get("Content-Disposition")); err == nil {
		b.Filename = path.Base(params["filename"])
	}
	b.Keys, _ = strconv.ParseInt(res.Header.Get("Limit-Backup-Keys"), 10, 64)
	n, err := io.Copy(w, res.Body)
	return b, n, err
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
