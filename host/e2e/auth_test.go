package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestAPITokens starts limitd with api.token_file: requests without a token get 401, the
// health check does not need one, the SDK client and limitctl work with it, a user's
// token reaches its own sessions alone, and no token appears in the daemon's log.
func TestAPITokens(t *testing.T) {
	const tok = "e2e-0123456789abcdef0123456789abcdef"
	const aliceTok = "e2e-alice-0123456789abcdef0123456789abcdef"
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# rotate by adding a line, restarting, then removing the old one\n"+tok+"\n"+aliceTok+" alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(config(t, t.TempDir(), "default"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "api {\n", "api {\n  token_file = \""+file+"\"\n", 1)
	d := start(t, writeConfig(t, cfg))

	if code, hdr, body := d.raw("POST", "/v1/sessions", "application/json", []byte(`{"name":"x"}`)); code != 401 || hdr.Get("WWW-Authenticate") == "" || body["status"] != 401.0 {
		t.Fatalf("POST /v1/sessions without a token: %d %v %v", code, hdr, body)
	}
	if code, _, body := d.raw("GET", "/v1/health", "", nil); code != 200 || body["status"] != "ok" {
		t.Fatalf("health without a token: %d %v", code, body)
	}
	if _, err := d.c.ListSessions(ctx, 10, ""); err == nil || err.(*client.Error).Status != 401 {
		t.Fatalf("client without a token: %v", err)
	}
	d.c.Token = tok
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "authorized"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"}); err != nil || r.Status != "ok" {
		t.Fatalf("execution with a token: %+v %v", r, err)
	}
	cmd := exec.Command(testbin.Command(t, "limitctl"), "-addr", d.url, "sessions", "list")
	cmd.Env = append(os.Environ(), "LIMIT_TOKEN=", "LIMIT_TOKEN_FILE="+file)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), s.ID) {
		t.Fatalf("limitctl with LIMIT_TOKEN_FILE: %v\n%s", err, out)
	}
	cmd = exec.Command(testbin.Command(t, "limitctl"), "-addr", d.url, "sessions", "list")
	cmd.Env = append(os.Environ(), "LIMIT_TOKEN=", "LIMIT_TOKEN_FILE=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") && !strings.Contains(string(out), "Bearer") {
		t.Fatalf("limitctl without a token: %v\n%s", err, out)
	}
	// A user's token reaches its own sessions, not the operator's (404, as an unknown id).
	alice := client.New(d.url)
	alice.Token = aliceTok
	if _, err := alice.GetSession(ctx, s.ID); err == nil || err.(*client.Error).Status != 404 {
		t.Fatalf("alice on the operator's session: %v", err)
	}
	own, err := alice.CreateSession(ctx, client.CreateSessionRequest{Name: "alice's"})
	if err != nil || own.Owner != "alice" {
		t.Fatalf("alice's session: %+v %v", own, err)
	}
	if l, err := d.c.ListSessionsOf(ctx, "alice", 10, ""); err != nil || len(l.Sessions) != 1 || l.Sessions[0].ID != own.ID {
		t.Fatalf("the operator's listing of alice's sessions: %+v %v", l, err)
	}
	d.stop()
	if log := d.stderr.String(); strings.Contains(log, tok) || strings.Contains(log, aliceTok) || !strings.Contains(log, "the API requires a bearer token") || !strings.Contains(log, "API request without a valid token") {
		t.Fatalf("daemon log (must say tokens are required and refusals, never the token):\n%s", log)
	}
}
