package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestBackupRoute: GET /v1/backup sends the archive (an operator's token only), one backup
// at a time, and says why when the storage offers no snapshot.
func TestBackupRoute(t *testing.T) {
	op, user := strings.Repeat("o", 32), strings.Repeat("u", 32)
	st := memstore.New()
	if err := st.Put(context.Background(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	var (
		mu      sync.Mutex
		hold    chan struct{} // when set, the next backup waits on it
		started = make(chan struct{}, 1)
		noSnap  bool
	)
	s := New(Options{Store: st, Tokens: []config.Token{{Digest: sha256.Sum256([]byte(op))}, {Digest: sha256.Sum256([]byte(user)), User: "alice"}},
		Backup: func(ctx context.Context) (*backup.Backup, error) {
			mu.Lock()
			h, ns := hold, noSnap
			mu.Unlock()
			if h != nil {
				started <- struct{}{}
				<-h
			}
			if ns {
				return nil, storage.ErrNoSnapshot
			}
			return backup.Prepare(ctx, backup.Source{DataDir: dataDir, Store: st, Manifest: backup.Manifest{Node: "n1"}})
		}})
	send := func(token string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/backup", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		s.ServeHTTP(rec, req)
		return rec
	}
	head := httptest.NewRecorder()
	hreq := httptest.NewRequest("HEAD", "/v1/backup", nil)
	hreq.Header.Set("Authorization", "Bearer "+op)
	s.ServeHTTP(head, hreq)
	if head.Code != http.StatusMethodNotAllowed || head.Header().Get("Allow") != "GET" {
		t.Errorf("HEAD: %d %v, want 405 without making a backup", head.Code, head.Header())
	}
	if left, _ := filepath.Glob(filepath.Join(dataDir, "backup-*")); len(left) > 0 {
		t.Errorf("HEAD made a backup: %v", left)
	}
	if rec := send(user); rec.Code != http.StatusForbidden {
		t.Errorf("a user's backup: %d, want 403", rec.Code)
	}
	rec := send(op)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/gzip" ||
		!strings.Contains(rec.Header().Get("Content-Disposition"), `filename="limit-backup-n1-`) || rec.Header().Get("Limit-Backup-Keys") != "1" {
		t.Fatalf("backup: %d %v", rec.Code, rec.Header())
	}
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(path, rec.Body.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := backup.Open(path, nil)
	if err != nil {
		t.Fatalf("the archive sent: %v", err)
	}
	if a.Manifest.Storage.Keys != 1 {
		t.Errorf("manifest %+v", a.Manifest)
	}
	if left, _ := filepath.Glob(filepath.Join(dataDir, "backup-*")); len(left) > 0 {
		t.Errorf("the backup's folder is left: %v", left)
	}

	// One at a time.
	mu.Lock()
	hold = make(chan struct{})
	mu.Unlock()
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- send(op) }()
	<-started
	if rec := send(op); rec.Code != http.StatusConflict || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a second backup while one is made: %d %v, want 409 with Retry-After", rec.Code, rec.Header())
	}
	mu.Lock()
	close(hold)
	hold = nil
	mu.Unlock()
	if rec := <-done; rec.Code != http.StatusOK {
		t.Errorf("the first backup: %d", rec.Code)
	}

	mu.Lock()
	noSnap = true
	mu.Unlock()
	rec = send(op)
	var p map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusNotImplemented || !strings.Contains(p["detail"].(string), "no point-in-time snapshot") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
		t.Errorf("a storage without snapshots: %d %s", rec.Code, rec.Body)
	}

	// The outcomes are counted: two sent, one refused while another was made, one failed.
	mrec := httptest.NewRecorder()
	mreq := httptest.NewRequest("GET", "/v1/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+op)
	s.ServeHTTP(mrec, mreq)
	for _, want := range []string{`limit_backups_total{outcome="sent"} 2`, `limit_backups_total{outcome="refused"} 1`,
		`limit_backups_total{outcome="failed"} 1`, `limit_backups_total{outcome="not_sent"} 0`} {
		if !strings.Contains(mrec.Body.String(), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(mrec.Body.String(), "limit_backup_last_success_timestamp_seconds 0\n") {
		t.Errorf("no time of the last backup sent")
	}
}
