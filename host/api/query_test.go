package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
)

// TestUnknownQueryParameter: a query parameter a route does not read is a 400 naming it,
// the route's parameters and the likely one meant, not an answer to another question (the
// knee of every session for ?session=ID); a route that takes none refuses any, the seed's
// unversioned paths as the /v1 ones; the parameters a route declares are accepted.
func TestUnknownQueryParameter(t *testing.T) {
	srv, _, sessions, _ := mergeServer(t)
	a, err := sessions.Create(context.Background(), session.CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		code         int
		says         []string
	}{
		{"GET", "/v1/rd/knee?session=" + a.ID, 400, []string{`unknown query parameter \"session\"; did you mean session_id?`, "GET /v1/rd/knee takes session_id, method or owner"}},
		{"GET", "/rd/knee?session=" + a.ID, 400, []string{`unknown query parameter \"session\"`}},
		{"GET", "/v1/sessions?ownr=bob", 400, []string{`\"ownr\"; did you mean owner?`}},
		{"GET", "/v1/governance/stats?sesion_id=" + a.ID, 400, []string{`\"sesion_id\"; did you mean session_id?`}},
		{"GET", "/v1/sessions?next=x", 400, []string{`\"next\"; did you mean next_token?`}},
		{"GET", "/v1/sessions?zzz=1", 400, []string{`unknown query parameter \"zzz\" (GET /v1/sessions takes per_page, next_token, include_deleted or owner)`}},
		// The health check ignores parameters: a probe's cache-buster must not fail it.
		{"GET", "/v1/health?verbose=1", 200, nil},
		{"GET", "/health?_=1733370000", 200, nil},
		{"GET", "/v1/sessions/" + a.ID + "?x=1", 400, []string{`GET /v1/sessions/{id} takes no query parameters`}},
		{"POST", "/v1/rd/knee?method=menger", 400, []string{`POST /v1/rd/knee takes no query parameters`}},
		{"GET", "/v1/sessions?per_page=1;owner=bob", 400, []string{"the query string cannot be read"}},
		{"GET", "/v1/sessions?owner=bob&ownr=bob&owner=x", 400, []string{`\"ownr\"`}},
		{"GET", "/v1/sessions?per_page=1&per_page=2", 400, []string{"query parameter per_page is given 2 times"}},
		{"GET", "/v1/health?", 200, nil},
		{"GET", "/v1/sessions?per_page=5&next_token=&include_deleted=true&owner=", 200, nil},
		{"GET", "/v1/governance/stats?session_id=" + a.ID + "&per_page=5", 200, nil},
		{"DELETE", "/v1/sessions/" + a.ID + "?owner_gone=false", 200, nil},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, rec.Code, rec.Body.String(), c.code)
			continue
		}
		if c.code == 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, rec.Header().Get("Content-Type"))
		}
		for _, s := range c.says {
			if !strings.Contains(rec.Body.String(), s) {
				t.Errorf("%s %s: %s, want it to say %s", c.method, c.path, rec.Body.String(), s)
			}
		}
	}
}

// TestDeclaredQueryAccepted: every parameter a route declares (and the OpenAPI document
// lists) gets past the query check, whatever the handler then makes of its value.
func TestDeclaredQueryAccepted(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	for _, rt := range srv.routes {
		for _, q := range rt.Query {
			path := "/v1" + strings.ReplaceAll(rt.Path, "{id}", "01ARZ3NDEKTSV4RRFFQ69G5FAV") + "?" + q + "=x"
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(rt.Method, path, nil))
			if strings.Contains(rec.Body.String(), "unknown query parameter") {
				t.Errorf("%s %s: %s", rt.Method, path, rec.Body.String())
			}
		}
	}
}

func TestClosestName(t *testing.T) {
	names := []string{"session_id", "per_page", "next_token", "owner"}
	for given, want := range map[string]string{
		"session": "session_id", "sesion_id": "session_id", "Session_ID": "session_id", "ownr": "owner",
		"perpage": "per_page", "next": "next_token", "limit": "", "id": "", "o": "",
	} {
		if got := closestName(given, names); got != want {
			t.Errorf("closestName(%q) = %q, want %q", given, got, want)
		}
	}
}
