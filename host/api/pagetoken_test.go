package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
)

// TestPageTokensBoundToTheirListing: a next_token continues only the listing that gave
// it; on another (a session's traces' on another session's, or on /v1/merged, which all
// took the same store tokens) it is a 400 saying so, not a page of the wrong list or an
// empty one that looks like the end.
func TestPageTokensBoundToTheirListing(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions, _ := mergeServer(t)
	var ids [2]string
	for i := range ids {
		s, err := sessions.Create(ctx, session.CreateRequest{Name: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = s.ID
		for range 3 {
			if _, err := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{}`), "api"); err != nil {
				t.Fatal(err)
			}
		}
	}
	page := func(path string) (int, map[string]any) {
		res, body := do(t, srv, "GET", path)
		return res.StatusCode, body
	}
	code, first := page("/v1/sessions/" + ids[0] + "/traces?per_page=1")
	tok, _ := first["next_token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("first page: %d %v", code, first)
	}
	q := "?per_page=1&next_token=" + url.QueryEscape(tok)
	if code, body := page("/v1/sessions/" + ids[0] + "/traces" + q); code != 200 || len(body["traces"].([]any)) != 1 {
		t.Errorf("its own listing: %d %v", code, body)
	}
	if code, body := page("/sessions/" + ids[0] + "/traces" + q); code != 200 {
		t.Errorf("its own listing, unversioned: %d %v", code, body)
	}
	for _, path := range []string{"/v1/sessions/" + ids[1] + "/traces", "/v1/merged", "/v1/sessions"} {
		if code, body := page(path + q); code != 400 || !strings.Contains(fmt.Sprint(body["detail"]), "next_token belongs to another listing") {
			t.Errorf("%s with another listing's token: %d %v", path, code, body)
		}
	}
	// The sessions' tokens are opaque and bound too.
	code, sl := page("/v1/sessions?per_page=1")
	stok, _ := sl["next_token"].(string)
	if code != 200 || stok == "" || strings.Contains(stok, ids[0]) {
		t.Fatalf("sessions' first page: %d %v", code, sl)
	}
	if code, body := page("/v1/sessions?per_page=1&next_token=" + url.QueryEscape(stok)); code != 200 || body["sessions"].([]any)[0].(map[string]any)["id"] != ids[1] {
		t.Errorf("sessions' second page: %d %v", code, body)
	}
	if code, body := page("/v1/merged?next_token=" + url.QueryEscape(stok)); code != 400 {
		t.Errorf("/v1/merged with the sessions' token: %d %v", code, body)
	}
	for _, bad := range []string{ids[0], "!!", "dDE6"} {
		if code, body := page("/v1/sessions?next_token=" + url.QueryEscape(bad)); code != 400 || !strings.Contains(fmt.Sprint(body["detail"]), "next_token") {
			t.Errorf("next_token %q: %d %v", bad, code, body)
		}
	}
	if code, body := page("/v1/merged?next_token=a&next_token=b"); code != 400 || !strings.Contains(fmt.Sprint(body["detail"]), "given 2 times") {
		t.Errorf("next_token twice: %d %v", code, body)
	}
}
