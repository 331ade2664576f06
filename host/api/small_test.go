package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
)

// TestSmallRequestChecks: a negative duplicate_tol is a 400 as a negative sensitivity is;
// GET /v1/rd/fgw/sessions checks its method before reading the sessions, and a session
// without traces is a 422 (the request is right, the session not ready); a query parameter
// given twice is a 400; ULIDs in lower case name what they name in upper case.
func TestSmallRequestChecks(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions, _ := mergeServer(t)
	a, err := sessions.Create(ctx, session.CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sessions.Create(ctx, session.CreateRequest{Name: "b"})
	tr, err := traces.Create(ctx, a.ID, trace.TraceCustom, json.RawMessage(`{}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	lower := strings.ToLower
	for _, c := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"POST", "/v1/rd/knee", `{"points":[[0,1],[1,0.2],[2,0.1],[3,0]],"duplicate_tol":-1}`, 400, "duplicate_tol"},
		{"GET", "/v1/rd/fgw/sessions?a=" + a.ID + "&b=" + b.ID + "&method=nope", "", 400, `unknown method \"nope\"`},
		{"GET", "/v1/rd/fgw/sessions?a=" + a.ID + "&b=01ARZ3NDEKTSV4RRFFQ69G5FAV&method=nope", "", 400, `unknown method`},
		{"GET", "/v1/rd/fgw/sessions?a=" + a.ID + "&b=" + b.ID, "", 422, "session " + b.ID + " has no traces yet"},
		{"GET", "/v1/sessions?per_page=1&per_page=2", "", 400, "query parameter per_page is given 2 times"},
		{"GET", "/v1/rd/knee?session_id=x&session_id=y", "", 400, "query parameter session_id is given 2 times"},
		{"GET", "/v1/sessions/" + lower(a.ID), "", 200, `"id": "` + a.ID + `"`},
		{"GET", "/v1/traces/" + lower(tr.ID), "", 200, `"id": "` + tr.ID + `"`},
		{"GET", "/v1/sessions/" + lower(a.ID) + "/traces", "", 200, tr.ID},
		{"GET", "/v1/governance/stats?session_id=" + lower(a.ID), "", 200, a.ID},
		{"POST", "/v1/traces", `{"session_id":"` + lower(a.ID) + `"}`, 201, `"session_id": "` + a.ID + `"`},
		{"POST", "/v1/governance/flag", `{"trace_id":"` + lower(tr.ID) + `","flag":"HighRisk","severity":2}`, 201, tr.ID},
		{"GET", "/v1/sessions/" + lower(a.ID) + "x", "", 404, ""},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.says) {
			t.Errorf("%s %s %s: %d %s, want %d saying %s", c.method, c.path, c.body, rec.Code, rec.Body.String(), c.code, c.says)
		}
	}
}
