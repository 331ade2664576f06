package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFromEnv: a client made from the environment finds the daemon at a bare HOST:PORT in
// LIMIT_ADDR (or the address given) and sends LIMIT_TOKEN, else the token in
// LIMIT_TOKEN_FILE; a bad address or token file is a clear error.
func TestFromEnv(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok","version":"t","plugins":[]}`))
	}))
	defer srv.Close()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# rotate monthly\n\n  file-token  \nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, addr, envAddr, token, tokenFile, wantAuth string
	}{
		{"bare host:port in LIMIT_ADDR", "", hostPort, "", "", ""},
		{"address given wins", srv.URL, "nowhere:1", "", "", ""},
		{"LIMIT_TOKEN", hostPort, "", "env-token", file, "Bearer env-token"},
		{"LIMIT_TOKEN_FILE", "", hostPort, "", file, "Bearer file-token"},
		{"token in the address", "http://:addr-token@" + hostPort, "", "", "", "Bearer addr-token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("LIMIT_ADDR", c.envAddr)
			t.Setenv("LIMIT_TOKEN", c.token)
			t.Setenv("LIMIT_TOKEN_FILE", c.tokenFile)
			cl, err := FromEnv(c.addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Health(context.Background()); err != nil {
				t.Fatal(err)
			}
			if auth != c.wantAuth {
				t.Fatalf("Authorization %q, want %q", auth, c.wantAuth)
			}
		})
	}
	t.Setenv("LIMIT_TOKEN", "")
	t.Setenv("LIMIT_TOKEN_FILE", "")
	t.Setenv("LIMIT_ADDR", "ftp://x")
	if _, err := FromEnv(""); err == nil || !strings.Contains(err.Error(), `LIMIT_ADDR "ftp://x" is not a daemon address`) {
		t.Fatalf("bad LIMIT_ADDR: %v", err)
	}
	t.Setenv("LIMIT_ADDR", "")
	t.Setenv("LIMIT_TOKEN_FILE", filepath.Join(t.TempDir(), "missing"))
	if _, err := FromEnv(""); err == nil || !strings.Contains(err.Error(), "cannot read the API token") {
		t.Fatalf("missing token file: %v", err)
	}
}

// TestReadTokenFileUserLine: a line of the daemon's token file that names its user
// ("TOKEN NAME") gives its token alone, so a user can be handed their line as it is.
func TestReadTokenFileUserLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# alice's\n\t0123456789abcdef0123456789abcdef   alice \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadTokenFile(file); err != nil || tok != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("ReadTokenFile: %q %v", tok, err)
	}
}
