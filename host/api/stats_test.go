package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
)

// TestStatsPaged: GET /v1/governance/stats answers a page of sessions (per_page,
// next_token) and their sum, or one session's (session_id), instead of reading every
// session the host ever had at each call.
func TestStatsPaged(t *testing.T) {
	ctx := context.Background()
	srv, _, sessions, stats := mergeServer(t)
	var ids []string
	for i := range 3 {
		s, err := sessions.Create(ctx, session.CreateRequest{Name: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
		for range i + 1 {
			if err := stats.Record(ctx, s.ID, governance.Delta{MergeRefused: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := sessions.Delete(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	get := func(q string) (int, map[string]any) {
		res, body := do(t, srv, "GET", "/v1/governance/stats"+q)
		return res.StatusCode, body
	}
	refused := func(m any) any { return m.(map[string]any)["merges_refused"] }
	code, p1 := get("?per_page=2")
	if code != 200 || len(p1["sessions"].(map[string]any)) != 2 || refused(p1["overall"]) != 3.0 || p1["next_token"] == nil {
		t.Fatalf("first page: %d %v", code, p1)
	}
	code, p2 := get("?per_page=2&next_token=" + url.QueryEscape(p1["next_token"].(string)))
	if code != 200 || len(p2["sessions"].(map[string]any)) != 1 || refused(p2["overall"]) != 3.0 || p2["next_token"] != nil {
		t.Fatalf("second page (a deleted session's counts): %d %v", code, p2)
	}
	if code, all := get(""); code != 200 || len(all["sessions"].(map[string]any)) != 3 || refused(all["overall"]) != 6.0 {
		t.Errorf("default page: %d %v", code, all)
	}
	if code, one := get("?session_id=" + ids[1]); code != 200 || len(one["sessions"].(map[string]any)) != 1 || refused(one["overall"]) != 2.0 {
		t.Errorf("session_id: %d %v", code, one)
	}
	for _, c := range []struct {
		q    string
		code int
		says string
	}{
		{"?session_id=01ARZ3NDEKTSV4RRFFQ69G5FAV", 404, "not found"},
		{"?session_id=" + ids[0] + "&next_token=" + url.QueryEscape(p1["next_token"].(string)), 400, "session_id answers one session"},
		{"?per_page=0", 400, "per_page must be an integer between 1 and 1000"},
	} {
		if code, body := get(c.q); code != c.code || !strings.Contains(fmt.Sprint(body["detail"]), c.says) {
			t.Errorf("%s: %d %v, want %d saying %q", c.q, code, body, c.code, c.says)
		}
	}
}
