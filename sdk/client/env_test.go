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
	if _, err := FromEnv(""); err == nil || !strings.HasPrefix(err.Error(), "LIMIT_TOKEN_FILE: cannot read the API token") {
		t.Fatalf("missing token file: %v", err)
	}
}

// TestParseAddr: an address as users write it becomes the daemon's base URL; one that
// cannot be is refused.
func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":                 "http://127.0.0.1:8080",
		"http://localhost:8080/":         "http://localhost:8080/",
		":18282":                         "http://127.0.0.1:18282",
		"http://:18282":                  "http://127.0.0.1:18282",
		"http://127.0.0.1:18282/v1":      "http://127.0.0.1:18282",
		"http://127.0.0.1:18282/v1/":     "http://127.0.0.1:18282",
		"https://proxy.example/limit/v1": "https://proxy.example/limit",
		"https://proxy.example/limit":    "https://proxy.example/limit",
		"http://[::1]:8080":              "http://[::1]:8080",
	} {
		u, err := ParseAddr(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:99999": "port 99999 is not between 1 and 65535",
		"127.0.0.1:0":            "port 0 is not between 1 and 65535",
		"ftp://host":             "scheme",
		"http://":                "no host",
	} {
		if _, err := ParseAddr(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAddr(%q): error %v, want %q", in, err, want)
		}
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
