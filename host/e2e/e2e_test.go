// Package e2e drives the real limitd binary with real plugin binaries over HTTP.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// daemon is a running limitd.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	url    string
	c      *client.Client
	stderr *syncbuf.Buffer
	config string
}

// config returns an HCL config with the echo runner and the keyword rule.
func config(t testing.TB, dataDir, policy string) string {
	t.Helper()
	testbin.Plugin(t, "storage-bolt")
	testbin.TestPlugin(t, "runner-echo")
	testbin.TestPlugin(t, "governance-keyword")
	src := fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "echo" {}
governance {
  policy = %q
  rule "keyword" {}
}
api {
  max_body_bytes = 65536
}
`, dataDir, testbin.PluginDir(t), policy)
	return writeConfig(t, src)
}

// writeConfig writes an HCL config into a fresh directory and returns its path.
func writeConfig(t testing.TB, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "limit.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func start(t testing.TB, configPath string) *daemon {
	t.Helper()
	bin := testbin.Command(t, "limitd")
	d := &daemon{t: t, config: configPath, stderr: &syncbuf.Buffer{}}
	d.cmd = exec.Command(bin, "-config", configPath)
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		t.Fatalf("limitd did not start: %v\n%s", err, d.stderr.String())
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("unexpected first line %q", line)
	}
	d.url = strings.TrimSpace(line[i:])
	d.c = client.New(d.url)
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
		d.t.Errorf("limitd did not stop on SIGTERM\n%s", d.stderr.String())
	}
	if d.t.Failed() || os.Getenv("E2E_LOG") != "" {
		d.t.Logf("limitd stderr:\n%s", d.stderr.String())
	}
}

// raw sends a request and returns status, headers and the decoded JSON body.
func (d *daemon) raw(method, path, contentType string, body []byte) (int, http.Header, map[string]any) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.url+path, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return res.StatusCode, res.Header, m
}

func mustProblem(t *testing.T, status int, h http.Header, body map[string]any, want int) {
	t.Helper()
	if status != want {
		t.Fatalf("status %d, want %d: %v", status, want, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	if body["status"] != float64(want) || body["title"] == "" || body["detail"] == "" {
		t.Fatalf("problem body %v", body)
	}
	if h.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
}

var ctx = context.Background()
