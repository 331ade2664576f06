package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// The tokens of the owner tests: an operator's, two of alice's (rotation) and bob's.
const (
	tokOperator = "operator-0123456789abcdef0123456789abcdef"
	tokAlice    = "alice-0123456789abcdef0123456789abcdef"
	tokAlice2   = "alice2-0123456789abcdef0123456789abcdef"
	tokBob      = "bob-0123456789abcdef0123456789abcdef"
)

// ownersFixture is an API server with the echo runner and the tokens above, and alice's,
// bob's and the operators' sessions.
type ownersFixture struct {
	t   *testing.T
	api pluginAPI
	srv *Server
	// alice and alice2 are alice's sessions (alice2 created for her by an operator), bob
	// bob's, op the operators' (no owner).
	alice, alice2, bob, op string
}

func newOwnersFixture(t *testing.T) *ownersFixture {
	t.Helper()
	a := newPluginAPI(t, memstore.New())
	opts := a.srv.opts
	opts.Tokens = []config.Token{
		{Digest: sha256.Sum256([]byte(tokOperator))},
		{Digest: sha256.Sum256([]byte(tokAlice)), User: "alice"},
		{Digest: sha256.Sum256([]byte(tokBob)), User: "bob"},
		{Digest: sha256.Sum256([]byte(tokAlice2)), User: "alice"},
	}
	f := &ownersFixture{t: t, api: a, srv: New(opts)}
	f.alice = f.create(tokAlice, `{"name":"a","runners":["echo"]}`, "alice")
	f.bob = f.create(tokBob, `{"name":"b","runners":["echo"]}`, "bob")
	f.op = f.create(tokOperator, `{"name":"o"}`, "")
	f.alice2 = f.create(tokOperator, `{"name":"a2","owner":"alice"}`, "alice")
	// A trace in each of alice's sessions (the FGW between them needs one), and three
	// refinement points in hers (her knee needs them).
	f.must(tokAlice, "POST", "/v1/sessions/"+f.alice+"/executions", `{"runner":"echo","input":"hello"}`, 200)
	f.must(tokAlice, "POST", "/v1/traces", `{"session_id":"`+f.alice2+`"}`, 201)
	for _, d := range []string{"0.1", "0.4", "0.9"} {
		f.must(tokAlice, "POST", "/v1/rd/points", `{"session_id":"`+f.alice+`","distortion":`+d+`,"variance":1}`, 201)
	}
	return f
}

// call sends a request with token tok ("" for none) and returns its status and body.
func (f *ownersFixture) call(tok, method, path, body string) (int, []byte) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// must sends a request that must answer want, and returns its JSON body.
func (f *ownersFixture) must(tok, method, path, body string, want int) map[string]any {
	f.t.Helper()
	code, b := f.call(tok, method, path, body)
	if code != want {
		f.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, b)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// create creates a session with tok and checks its owner.
func (f *ownersFixture) create(tok, body, owner string) string {
	f.t.Helper()
	s := f.must(tok, "POST", "/v1/sessions", body, 201)
	if got, _ := s["owner"].(string); got != owner {
		f.t.Fatalf("session created with %s: owner %q, want %q", body, got, owner)
	}
	return s["id"].(string)
}

// newTrace creates a custom trace in session sid (straight in the store).
func (f *ownersFixture) newTrace(sid string) string {
	f.t.Helper()
	rec, err := f.api.traces.Create(context.Background(), sid, trace.TraceCustom, json.RawMessage(`{"x":1}`), "api")
	if err != nil {
		f.t.Fatal(err)
	}
	return rec.ID
}

// isolationCase is a request that names one session or trace: a user whose token does
// not reach it must get the answer of an unknown id, and its owner the answer ok.
type isolationCase struct {
	// route is the operation, as Server.Routes lists it.
	route string
	// trace tells that the case names a trace of alice's (a new one per case), else one
	// of her sessions.
	trace bool
	// fresh gives the case a session of alice's of its own (it changes it).
	fresh bool
	// request is the request naming id, made by the user whose session own is.
	request func(id, own string) (method, path, body string)
	ok      int
}

// isolationCases cover every operation that names a session or a trace (see
// TestEveryRouteIsScoped).
var isolationCases = []isolationCase{
	{route: "GET /v1/sessions/{id}", ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/sessions/" + id, ""
	}},
	{route: "POST /v1/sessions/{id}/executions", ok: 200, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/sessions/" + id + "/executions", `{"runner":"echo","input":"hi"}`
	}},
	{route: "GET /v1/sessions/{id}/traces", ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/sessions/" + id + "/traces", ""
	}},
	{route: "DELETE /v1/sessions/{id}", ok: 200, fresh: true, request: func(id, _ string) (string, string, string) {
		return "DELETE", "/v1/sessions/" + id, ""
	}},
	{route: "POST /v1/traces", ok: 201, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/traces", `{"session_id":"` + id + `"}`
	}},
	{route: "POST /v1/rd/points", ok: 201, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/rd/points", `{"session_id":"` + id + `","distortion":0.5,"variance":1}`
	}},
	{route: "GET /v1/rd/knee", ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/rd/knee?session_id=" + id, ""
	}},
	{route: "GET /v1/rd/fgw/sessions", ok: 200, request: func(id, own string) (string, string, string) {
		return "GET", "/v1/rd/fgw/sessions?a=" + id + "&b=" + own, ""
	}},
	{route: "GET /v1/rd/fgw/sessions", ok: 200, request: func(id, own string) (string, string, string) {
		return "GET", "/v1/rd/fgw/sessions?a=" + own + "&b=" + id, ""
	}},
	{route: "POST /v1/artifacts/export", ok: 200, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/artifacts/export", `{"session_id":"` + id + `"}`
	}},
	{route: "GET /v1/governance/stats", ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/governance/stats?session_id=" + id, ""
	}},
	{route: "GET /v1/traces/{id}", trace: true, ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/traces/" + id, ""
	}},
	{route: "POST /v1/traces/{id}/provenance", trace: true, ok: 201, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/traces/" + id + "/provenance", `{"kind":"note","data":{"n":1}}`
	}},
	{route: "GET /v1/traces/{id}/provenance/verify", trace: true, ok: 200, request: func(id, _ string) (string, string, string) {
		return "GET", "/v1/traces/" + id + "/provenance/verify", ""
	}},
	{route: "POST /v1/traces/{id}/merge", trace: true, ok: 200, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/traces/" + id + "/merge", ""
	}},
	{route: "POST /v1/governance/flag", trace: true, ok: 201, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/governance/flag", `{"trace_id":"` + id + `","flag":"anomaly","severity":2,"reason":"r"}`
	}},
	{route: "POST /v1/artifacts/export", trace: true, ok: 200, request: func(id, _ string) (string, string, string) {
		return "POST", "/v1/artifacts/export", `{"trace_ids":["` + id + `"]}`
	}},
	{route: "POST /v1/artifacts/export", trace: true, ok: 200, request: func(id, own string) (string, string, string) {
		return "POST", "/v1/artifacts/export", `{"trace_ids":["` + own + `","` + id + `"]}`
	}},
}

// TestOwnerIsolation: for every operation that names a session or a trace, bob gets, for
// alice's, exactly the answer of an id that names nothing (404, same problem), and so does
// a user for an operator's session; alice (with either of her tokens) and an operator get
// the operation's answer.
func TestOwnerIsolation(t *testing.T) {
	f := newOwnersFixture(t)
	bobTrace := f.newTrace(f.bob)
	for i, c := range isolationCases {
		t.Run(fmt.Sprintf("%d %s", i, c.route), func(t *testing.T) {
			f.t = t
			id, bobOwn, aliceOwn, unknown := f.alice, f.bob, f.alice2, session.NewID()
			if c.fresh {
				id = f.create(tokAlice, `{"name":"fresh"}`, "alice")
			}
			if c.trace {
				id, bobOwn, aliceOwn = f.newTrace(f.alice), bobTrace, f.newTrace(f.alice)
			}
			m, p, b := c.request(id, bobOwn)
			code, got := f.call(tokBob, m, p, b)
			m, p, b = c.request(unknown, bobOwn)
			wantCode, want := f.call(tokBob, m, p, b)
			if wantCode != 404 {
				t.Fatalf("setup: an unknown id answers %d: %s", wantCode, want)
			}
			if code != wantCode || strings.ReplaceAll(string(got), id, "ID") != strings.ReplaceAll(string(want), unknown, "ID") {
				t.Errorf("bob on alice's %s: %d %s\nwant, as for an unknown id: %d %s", id, code, clipAnswer(got), wantCode, want)
			}
			if !c.trace {
				m, p, b = c.request(f.op, f.alice2)
				if code, got := f.call(tokAlice, m, p, b); code != 404 || !strings.Contains(string(got), "session not found: "+f.op) {
					t.Errorf("alice on an operators' session: %d %s", code, clipAnswer(got))
				}
			}
			m, p, b = c.request(id, aliceOwn)
			tok := tokAlice
			if i%2 == 1 {
				tok = tokAlice2 // a rotated token is alice's as well
			}
			if code, got := f.call(tok, m, p, b); code != c.ok {
				t.Errorf("alice on her own: %d, want %d: %s", code, c.ok, clipAnswer(got))
			}
		})
	}
	// An operator reaches everything (a case that changes what it names had its turn).
	f.t = t
	for _, path := range []string{"/v1/sessions/" + f.alice, "/v1/sessions/" + f.bob + "/traces", "/v1/traces/" + bobTrace, "/v1/governance/stats?session_id=" + f.alice} {
		f.must(tokOperator, "GET", path, "", 200)
	}
	f.must(tokOperator, "POST", "/v1/traces/"+bobTrace+"/provenance", `{"kind":"note"}`, 201)
}

// TestEveryRouteIsScoped walks the route table: every operation that names a session or
// a trace (a path {id}, a session or trace id in its query or body) has a case in
// isolationCases, and every other operation is listed here as reaching no one's session
// or trace by id, so that a new route cannot forget the owner check.
func TestEveryRouteIsScoped(t *testing.T) {
	// unscoped reach nothing by id: open to every token, operators' only, or listings
	// whose scoping TestOwnerListings checks.
	unscoped := []string{
		"GET /v1/health", "GET /v1/health/live", "GET /v1/health/ready", "GET /v1/openapi.json", "GET /v1/metrics", "GET /v1/provenance/key",
		"POST /v1/sessions", "GET /v1/sessions", "GET /v1/merged", "POST /v1/governance/evaluate",
		"GET /v1/governance/policies", "POST /v1/rd/fgw", "POST /v1/rd/knee", "POST /v1/rd/curve",
		"POST /v1/nodes/{node}/settle",
	}
	covered := map[string]bool{}
	for _, c := range isolationCases {
		covered[c.route] = true
	}
	s := newPluginAPI(t, memstore.New()).srv
	idFields := map[string]bool{"session_id": true, "trace_id": true, "trace_ids": true, "a": true, "b": true}
	for _, rt := range s.routes {
		name := rt.Method + " /v1" + rt.Path
		names := strings.Contains(rt.Path, "{id}") // {node} names a host
		for _, q := range rt.Query {
			names = names || idFields[q]
		}
		if rt.Request != nil {
			for _, field := range jsonFields(reflect.TypeOf(rt.Request)) {
				names = names || idFields[field]
			}
		}
		switch {
		case covered[name] && slices.Contains(unscoped, name):
			t.Errorf("%s is both scoped and unscoped", name)
		case names && !covered[name]:
			t.Errorf("%s names a session or trace but has no case in isolationCases", name)
		case !covered[name] && !slices.Contains(unscoped, name):
			t.Errorf("%s is neither in isolationCases nor listed as unscoped: decide whom it reaches", name)
		}
		delete(covered, name)
	}
	for name := range covered {
		t.Errorf("isolationCases names %s, which is no route", name)
	}
}

// clipAnswer shortens an answer for a test's message (an export is a gzip'd tar).
func clipAnswer(b []byte) string {
	if len(b) > 0 && b[0] != '{' {
		return fmt.Sprintf("(%d bytes, not JSON)", len(b))
	}
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// jsonFields lists the JSON names of a struct type's fields, embedded structs' included.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// TestSharedRecord: a merged trace of alice's is every token holder's to read (get,
// verify, export by id, listed in GET /v1/merged), but bob can neither append to, flag
// nor merge it: 403, as it is visibly there (a trace he cannot see at all is 404, see
// TestOwnerIsolation). Once withdrawn from the shared record it is alice's alone again.
func TestSharedRecord(t *testing.T) {
	f := newOwnersFixture(t)
	id := f.newTrace(f.alice)
	f.must(tokAlice, "POST", "/v1/traces/"+id+"/merge", "", 200)

	f.must(tokBob, "GET", "/v1/traces/"+id, "", 200)
	f.must(tokBob, "GET", "/v1/traces/"+id+"/provenance/verify", "", 200)
	f.must(tokBob, "POST", "/v1/artifacts/export", `{"trace_ids":["`+id+`"]}`, 200)
	list := f.must(tokBob, "GET", "/v1/merged", "", 200)
	if ts := list["traces"].([]any); len(ts) != 1 || ts[0].(map[string]any)["id"] != id {
		t.Fatalf("bob's GET /v1/merged: %v", list)
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/traces/" + id + "/provenance", `{"kind":"note"}`},
		{"POST", "/v1/governance/flag", `{"trace_id":"` + id + `","flag":"unsafe","severity":9,"reason":"r"}`},
		{"POST", "/v1/traces/" + id + "/merge", ""},
	} {
		if code, body := f.call(tokBob, r.method, r.path, r.body); code != 403 || !strings.Contains(string(body), "only the trace's owner or an operator may append to, flag or merge it") {
			t.Errorf("bob %s %s on alice's merged trace: %d %s", r.method, r.path, code, clipAnswer(body))
		}
	}
	// Alice's severe flag withdraws it; it is hers alone again.
	f.must(tokAlice, "POST", "/v1/governance/flag", `{"trace_id":"`+id+`","flag":"unsafe","severity":9,"reason":"r"}`, 201)
	if code, body := f.call(tokBob, "GET", "/v1/traces/"+id, ""); code != 404 {
		t.Errorf("bob on a withdrawn trace: %d %s", code, clipAnswer(body))
	}
}

// TestOwnerListings: GET /v1/sessions lists a user's own sessions, in full pages with the
// right next_token; an operator's lists all, or the owner's with ?owner=; a user naming
// another owner gets 403, and a malformed owner 400. Governance stats and the knee of all
// sessions cover the user's own sessions only.
func TestOwnerListings(t *testing.T) {
	f := newOwnersFixture(t)
	extra := f.create(tokAlice, `{"name":"a3"}`, "alice")
	list := func(tok, query string) []string {
		t.Helper()
		var ids []string
		next := ""
		for {
			q := "?per_page=1" + query
			if next != "" {
				q += "&next_token=" + next
			}
			page := f.must(tok, "GET", "/v1/sessions"+q, "", 200)
			ss := page["sessions"].([]any)
			next, _ = page["next_token"].(string)
			if next != "" && len(ss) != 1 {
				t.Fatalf("a page before the last holds %d sessions", len(ss))
			}
			for _, s := range ss {
				ids = append(ids, s.(map[string]any)["id"].(string))
			}
			if next == "" {
				return ids
			}
		}
	}
	aliceAll := []string{f.alice, f.alice2, extra}
	for _, tt := range []struct {
		who, tok, query string
		want            []string
	}{
		{"alice", tokAlice, "", aliceAll},
		{"alice, owner=alice", tokAlice2, "&owner=alice", aliceAll},
		{"bob", tokBob, "", []string{f.bob}},
		{"operator", tokOperator, "", []string{f.alice, f.bob, f.op, f.alice2, extra}},
		{"operator, owner=alice", tokOperator, "&owner=alice", aliceAll},
		{"operator, owner=bob", tokOperator, "&owner=bob", []string{f.bob}},
		{"operator, owner=carol", tokOperator, "&owner=carol", nil},
	} {
		if got := list(tt.tok, tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.who, got, tt.want)
		}
	}
	if code, body := f.call(tokAlice, "GET", "/v1/sessions?owner=bob", ""); code != 403 || !strings.Contains(string(body), "own user's sessions") {
		t.Errorf("alice listing bob's: %d %s", code, body)
	}
	if code, body := f.call(tokOperator, "GET", "/v1/sessions?owner=Bob", ""); code != 400 || !strings.Contains(string(body), "owner") {
		t.Errorf("a malformed owner: %d %s", code, body)
	}

	// Stats: bob sees his session alone, and totals over it.
	f.must(tokBob, "POST", "/v1/sessions/"+f.bob+"/executions", `{"runner":"echo","input":"secret"}`, 200)
	stats := f.must(tokBob, "GET", "/v1/governance/stats", "", 200)
	if ss := stats["sessions"].(map[string]any); len(ss) != 1 || ss[f.bob] == nil {
		t.Errorf("bob's stats list %v", ss)
	}
	opStats := f.must(tokOperator, "GET", "/v1/governance/stats", "", 200)
	if ss := opStats["sessions"].(map[string]any); len(ss) != 5 {
		t.Errorf("the operator's stats list %d sessions", len(ss))
	}
	aliceStats := f.must(tokAlice, "GET", "/v1/governance/stats", "", 200)
	if ss := aliceStats["sessions"].(map[string]any); len(ss) != 3 || ss[f.bob] != nil {
		t.Errorf("alice's stats list %v", ss)
	}
	bobTotal, _ := json.Marshal(stats["overall"])
	aliceTotal, _ := json.Marshal(aliceStats["overall"])
	if string(bobTotal) == string(aliceTotal) {
		t.Errorf("bob's and alice's totals are the same: %s", bobTotal)
	}
	// The knee of all sessions: alice's points are hers; bob has none.
	f.must(tokAlice, "GET", "/v1/rd/knee", "", 200)
	if code, body := f.call(tokBob, "GET", "/v1/rd/knee", ""); code != 422 || !strings.Contains(string(body), "bob's sessions have 0 refinement point(s)") {
		t.Errorf("bob's knee of all sessions: %d %s", code, body)
	}
	f.must(tokOperator, "GET", "/v1/rd/knee", "", 200)
}

// TestOwnerOnCreate: a user token creates sessions for its own user; naming another owner
// is 403, naming itself is allowed; an operator may name any well-formed user (400 for a
// malformed one).
func TestOwnerOnCreate(t *testing.T) {
	f := newOwnersFixture(t)
	if code, body := f.call(tokAlice, "POST", "/v1/sessions", `{"owner":"bob"}`); code != 403 || !strings.Contains(string(body), "only for its own user") {
		t.Errorf("alice creating bob's session: %d %s", code, body)
	}
	f.create(tokAlice, `{"owner":"alice"}`, "alice")
	f.create(tokOperator, `{"owner":"carol"}`, "carol")
	if code, body := f.call(tokOperator, "POST", "/v1/sessions", `{"owner":"Carol Smith"}`); code != 400 || !strings.Contains(string(body), "owner") {
		t.Errorf("a malformed owner: %d %s", code, body)
	}
}

// TestMetricsForOperators: /metrics and /v1/metrics answer a user token 403 problem+json
// saying an operator's token is needed; an operator's token gets them.
func TestMetricsForOperators(t *testing.T) {
	f := newOwnersFixture(t)
	for _, path := range []string{"/metrics", "/v1/metrics"} {
		code, body := f.call(tokAlice, "GET", path, "")
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil || code != 403 || !strings.Contains(fmt.Sprint(p["detail"]), "needs an operator's token") {
			t.Errorf("alice on %s: %d %s", path, code, body)
		}
		if code, body := f.call(tokOperator, "GET", path, ""); code != 200 || !strings.Contains(string(body), "limit_http_requests_total") {
			t.Errorf("operator on %s: %d", path, code)
		}
	}
	// Routes open to every token stay open to a user's.
	for _, path := range []string{"/v1/openapi.json", "/v1/provenance/key", "/v1/governance/policies", "/v1/health"} {
		f.must(tokBob, "GET", path, "", 200)
	}
	f.must(tokBob, "POST", "/v1/governance/evaluate", `{"kind":"prompt","text":"hi"}`, 200)
	f.must(tokBob, "POST", "/v1/rd/knee", `{"points":[[0,1],[1,0.5],[2,0.4],[3,0.35]]}`, 200)
}

// TestPrincipalLogged: the per-request debug line names the request's principal
// (operator, the user's name, anonymous for a health check without a token), never the
// token.
func TestPrincipalLogged(t *testing.T) {
	var logs strings.Builder
	s := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}), Tokens: []config.Token{
		{Digest: sha256.Sum256([]byte(tokOperator))}, {Digest: sha256.Sum256([]byte(tokAlice)), User: "alice"},
	}})
	for _, tc := range []struct{ tok, path, want string }{
		{tokAlice, "/v1/openapi.json", "principal=user:alice"},
		{tokOperator, "/v1/openapi.json", "principal=operator"},
		{"", "/v1/health", "principal=anonymous"},
	} {
		logs.Reset()
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		s.ServeHTTP(httptest.NewRecorder(), req)
		if line := logs.String(); !strings.Contains(line, tc.want) || strings.Contains(line, "0123456789abcdef") {
			t.Errorf("%s: log %q, want %q and no token", tc.path, line, tc.want)
		}
	}
}

// TestOwnerDocumented: the OpenAPI document shows a session's owner (answer and request),
// the owner query parameter of the listings, and the 403 of the operators' routes.
func TestOwnerDocumented(t *testing.T) {
	f := newOwnersFixture(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name string } `json:"parameters"`
			Responses  map[string]any          `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	_, b := f.call(tokBob, "GET", "/v1/openapi.json", "")
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, schema := range []string{"Session", "SessionCreateRequest"} {
		if doc.Components.Schemas[schema].Properties["owner"] == nil {
			t.Errorf("schema %s has no owner", schema)
		}
	}
	for _, path := range []string{"/v1/sessions", "/v1/governance/stats", "/v1/rd/knee"} {
		op := doc.Paths[path]["get"]
		if !slices.ContainsFunc(op.Parameters, func(p struct{ Name string }) bool { return p.Name == "owner" }) || op.Responses["403"] == nil {
			t.Errorf("GET %s: parameters %v, responses %v: want owner and 403", path, op.Parameters, op.Responses)
		}
	}
	if doc.Paths["/v1/metrics"]["get"].Responses["403"] == nil || doc.Paths["/v1/health"]["get"].Responses["403"] != nil {
		t.Errorf("403 on metrics %v, health %v", doc.Paths["/v1/metrics"]["get"].Responses, doc.Paths["/v1/health"]["get"].Responses)
	}
}

// TestHealthShowsOwnProcesses: GET /v1/health lists a session's runner process (its
// session id and isolation details) only to the session's owner and the operators; the
// health check without a token sees the host's plugins alone. The host's health counts
// every process all the same.
func TestHealthShowsOwnProcesses(t *testing.T) {
	f := newOwnersFixture(t)
	opts := f.srv.opts
	opts.Plugins = func() []plugins.Status {
		return []plugins.Status{
			{Name: "bolt", Kind: "storage", Healthy: true},
			{Name: "echo", Kind: "runner", Session: f.alice, Healthy: true},
			{Name: "echo", Kind: "runner", Session: f.bob, Healthy: true},
		}
	}
	f.srv = New(opts)
	for tok, want := range map[string][]string{
		tokOperator: {"", f.alice, f.bob},
		tokAlice:    {"", f.alice},
		tokBob:      {"", f.bob},
		"":          {""},
	} {
		code, body := f.call(tok, "GET", "/v1/health", "")
		var h healthResponse
		if err := json.Unmarshal(body, &h); err != nil || code != 200 || h.Status != "ok" {
			t.Fatalf("token %q: %d %s", tok, code, body)
		}
		var got []string
		for _, p := range h.Plugins {
			got = append(got, p.Session)
		}
		if !slices.Equal(got, want) {
			t.Errorf("token %q sees the processes of sessions %q, want %q", tok, got, want)
		}
	}
}

// TestHealthDetailForOperators: what a backend says of itself (an address, a database
// user) and why a plugin's start failed are shown to operators only; the health check
// without a token and a user's see that something is wrong.
func TestHealthDetailForOperators(t *testing.T) {
	f := newOwnersFixture(t)
	opts := f.srv.opts
	const cause = "PostgreSQL at 127.0.0.1:18604 cannot be reached: failed to connect to `user=audit database=audit_storage`"
	opts.Plugins = func() []plugins.Status {
		return []plugins.Status{{Name: "postgres", Kind: "storage", Healthy: false, Detail: cause, LastError: "start: open /srv/secret/x: denied"}}
	}
	f.srv = New(opts)
	for tok, full := range map[string]bool{tokOperator: true, tokAlice: false, "": false} {
		code, body := f.call(tok, "GET", "/v1/health", "")
		var h healthResponse
		if err := json.Unmarshal(body, &h); err != nil || code != 503 || h.Status != "degraded" || len(h.Plugins) != 1 {
			t.Fatalf("token %q: %d %s", tok, code, body)
		}
		p := h.Plugins[0]
		if shown := p.Detail == cause && strings.Contains(p.LastError, "/srv/secret"); shown != full {
			t.Errorf("token %q: detail %q, last_error %q", tok, p.Detail, p.LastError)
		}
		if p.Detail == "" || p.LastError == "" {
			t.Errorf("token %q: nothing said of the trouble: %+v", tok, p)
		}
	}
}

// TestHealthHostWideForOperators: a backend's metrics (bolt's checkpoints, its log's
// pending bytes) and the pool's pre-started processes (whose pids change whenever any
// user creates a session) are the operators' to see; the health check without a token and
// a user's keep each plugin's name, kind, version, pid and health, and an unhealthy pool
// entry, which says why the host is degraded.
func TestHealthHostWideForOperators(t *testing.T) {
	f := newOwnersFixture(t)
	opts := f.srv.opts
	metrics := map[string]float64{"checkpoints": 7, "log_pending_bytes": 4096, "log_pending_keys": 3}
	opts.Plugins = func() []plugins.Status {
		return []plugins.Status{
			{Name: "bolt", Kind: "storage", Version: "v1", PID: 41, Healthy: true, Metrics: metrics},
			{Name: "python", Kind: plugins.KindPool, Version: "v1", PID: 42, Healthy: true},
			{Name: "llama", Kind: plugins.KindPool, Healthy: false, LastError: "start: no model at /srv/models/x.gguf"},
		}
	}
	f.srv = New(opts)
	for tok, operator := range map[string]bool{tokOperator: true, tokAlice: false, "": false} {
		code, body := f.call(tok, "GET", "/v1/health", "")
		var h healthResponse
		if err := json.Unmarshal(body, &h); err != nil || code != 503 || h.Status != "degraded" {
			t.Fatalf("token %q: %d %s", tok, code, body)
		}
		var kinds []string
		for _, p := range h.Plugins {
			kinds = append(kinds, p.Name+"/"+p.Kind)
		}
		want := []string{"bolt/storage", "llama/pool"}
		if operator {
			want = []string{"bolt/storage", "python/pool", "llama/pool"}
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("token %q sees %q, want %q", tok, kinds, want)
		}
		bolt := h.Plugins[0]
		if bolt.PID != 41 || bolt.Version != "v1" || !bolt.Healthy {
			t.Errorf("token %q: bolt's entry %+v, want its pid, version and health", tok, bolt)
		}
		if shown := bolt.Metrics != nil; shown != operator {
			t.Errorf("token %q: bolt's metrics %v", tok, bolt.Metrics)
		}
	}
}

// TestPrincipalsRecorded: what the host records of who asked, in the signed chain: an
// execution's trace data names the principal that ran it (requested_by), a flag set by
// hand its setter (set_by), a merged entry who asked for the merge (by), and a trace made
// without an agent is created under the caller's principal; the chain still verifies.
func TestPrincipalsRecorded(t *testing.T) {
	f := newOwnersFixture(t)
	res := f.must(tokAlice, "POST", "/v1/sessions/"+f.alice+"/executions", `{"runner":"echo","input":"hi"}`, 200)
	id := res["trace_id"].(string)
	f.must(tokOperator, "POST", "/v1/governance/flag", `{"trace_id":"`+id+`","flag":"anomaly","severity":2,"reason":"looked at"}`, 201)
	f.must(tokAlice, "POST", "/v1/traces/"+id+"/merge", ``, 200)
	tr := f.must(tokAlice, "GET", "/v1/traces/"+id, "", 200)
	if by := tr["data"].(map[string]any)["requested_by"]; by != "user:alice" {
		t.Errorf("the execution's trace data says requested_by %v, want user:alice", by)
	}
	var flagBy, mergeBy any
	for _, e := range tr["provenance"].([]any) {
		e := e.(map[string]any)
		data, _ := e["data"].(map[string]any)
		switch e["kind"] {
		case trace.KindFlagged:
			flagBy = data["set_by"]
		case trace.KindMerged:
			mergeBy = data["by"]
		}
	}
	if flagBy != "operator" || mergeBy != "user:alice" {
		t.Errorf("the flag's set_by %v (want operator), the merged entry's by %v (want user:alice)", flagBy, mergeBy)
	}
	if v := f.must(tokAlice, "GET", "/v1/traces/"+id+"/provenance/verify", "", 200); v["valid"] != true {
		t.Errorf("the chain does not verify: %v", v)
	}

	custom := f.must(tokBob, "POST", "/v1/traces", `{"session_id":"`+f.bob+`"}`, 201)["id"].(string)
	chain := f.must(tokBob, "GET", "/v1/traces/"+custom, "", 200)["provenance"].([]any)
	if agent := chain[0].(map[string]any)["agent"]; agent != "user:bob" {
		t.Errorf("a trace bob made without an agent was created by %v, want user:bob", agent)
	}
}

// TestOwnerGoneIsForOperators: only an operator may delete a session as one whose host is
// gone for good; a user's try is 403 and leaves the session as it was.
func TestOwnerGoneIsForOperators(t *testing.T) {
	f := newOwnersFixture(t)
	f.must(tokAlice, "DELETE", "/v1/sessions/"+f.alice+"?owner_gone=true", "", 403)
	if s := f.must(tokAlice, "GET", "/v1/sessions/"+f.alice, "", 200); s["state"] != "active" {
		t.Errorf("after the refused delete: %v", s["state"])
	}
	if s := f.must(tokOperator, "DELETE", "/v1/sessions/"+f.alice+"?owner_gone=true", "", 200); s["state"] != "deleted" {
		t.Errorf("an operator's delete with owner_gone: %v", s["state"])
	}
}

// TestPrincipalLookAlikeAgents: a user may not name, as the agent of an entry or of a
// trace it creates, another principal's agent in look-alike letters (Cyrillic "е" and
// "о", "0" for "o"), in another case, with a look-alike separator ("user;alice", "user
// alice", fullwidth "user：alice"), nor its own in another spelling; only its own exactly.
// Agents that merely begin like one ("operators", "username") are its to choose.
func TestPrincipalLookAlikeAgents(t *testing.T) {
	f := newOwnersFixture(t)
	tr := f.must(tokBob, "POST", "/v1/traces", `{"session_id":"`+f.bob+`"}`, 201)["id"].(string)
	entry := func(agent string) (int, []byte) {
		b, _ := json.Marshal(map[string]any{"kind": "review", "agent": agent})
		return f.call(tokBob, "POST", "/v1/traces/"+tr+"/provenance", string(b))
	}
	created := func(agent string) (int, []byte) {
		b, _ := json.Marshal(map[string]any{"session_id": f.bob, "agent": agent})
		return f.call(tokBob, "POST", "/v1/traces", string(b))
	}
	for _, agent := range []string{
		"operator", "OPERATOR", "operator.review",
		"op\u0435rator", "\u043eperator", "0perator", "operat0r", // Cyrillic е, о; digit zero
		"user:alice", "user:\u0430lice", "us\u0435r:alice", "USER:ALICE",
		"user;alice", "user alice", "user\uff1aalice", "user\u200b:alice", "user-alice",
		"USER:BOB", "user;bob", "us\u0435r:bob", // its own, spelled otherwise
	} {
		for name, send := range map[string]func(string) (int, []byte){"entry": entry, "trace": created} {
			code, body := send(agent)
			if code != 400 || !strings.Contains(string(body), "reads as a principal") {
				t.Errorf("%s by agent %q: %d %s, want 400 naming a principal", name, agent, code, body)
			}
		}
	}
	for _, agent := range []string{"user:bob", "reviewer", "operators", "username", "userbot", "users", "user", "cooperator"} {
		if code, body := entry(agent); code != 201 {
			t.Errorf("entry by agent %q: %d %s, want 201", agent, code, body)
		}
		if code, body := created(agent); code != 201 {
			t.Errorf("trace by agent %q: %d %s, want 201", agent, code, body)
		}
	}
}
