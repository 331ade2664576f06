package e2e

import (
	"errors"
	"fmt"
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

// TestSessionsStayOnTheirHost: two hosts on one PostgreSQL database (each its own
// data_dir, so its own node): a session runs on the host that created it; the other
// answers 409 naming that node to an execution or a delete, rather than running a second,
// separate copy of the session (its variables, files and execution slots split in two) or
// deleting a session whose processes it cannot stop. An operator may delete it there with
// owner_gone (its host gone for good); the other host sees the session as stored.
func TestSessionsStayOnTheirHost(t *testing.T) {
	u, _ := pgSchema(t, pgTestURL(t))
	pluginDir := auditPluginDir(t, "postgres", false)
	a := start(t, auditConfig(t, "postgres", fmt.Sprintf("url = %q", u), pluginDir, t.TempDir(), false))
	b := start(t, auditConfig(t, "postgres", fmt.Sprintf("url = %q", u), pluginDir, t.TempDir(), false))
	s, err := a.c.CreateSession(ctx, client.CreateSessionRequest{Name: "on a"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := a.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"}); err != nil || r.Status != "ok" {
		t.Fatalf("on its host: %+v %v", r, err)
	}
	otherNode := func(what string, err error) {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 409 || string(e.Extra["owner_node"]) != `"`+s.OwnerNode+`"` {
			t.Errorf("%s through the other host: %v (want 409 naming node %s)", what, err, s.OwnerNode)
		}
	}
	_, err = b.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"})
	otherNode("an execution", err)
	_, err = b.c.DeleteSession(ctx, s.ID)
	otherNode("a delete", err)
	if traces, err := a.c.ListTraces(ctx, s.ID, 10, ""); err != nil || len(traces.Traces) != 1 {
		t.Errorf("the session holds other traces than its one execution's (a refused execution left one?): %v", err)
		if err == nil {
			t.Errorf("it holds %d", len(traces.Traces))
		}
	}
	// Reads are the storage's: the other host answers them.
	if got, err := b.c.GetSession(ctx, s.ID); err != nil || got.State != "active" || got.OwnerNode != s.OwnerNode {
		t.Errorf("reading the session through the other host: %+v %v", got, err)
	}
	// Its host gone for good: an operator deletes it through the other.
	status, _, body := b.raw("DELETE", "/v1/sessions/"+s.ID+"?owner_gone=true", "", nil)
	if status != 200 || body["state"] != "deleted" {
		t.Fatalf("DELETE ?owner_gone=true: %d %v", status, body)
	}
	if got, err := b.c.GetSession(ctx, s.ID); err != nil || got.State != "deleted" {
		t.Errorf("the session after it: %+v %v", got, err)
	}
}
