package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/limitgraph/limit/internal/testproxy"
	"github.com/limitgraph/limit/sdk/client"
)

// The PostgreSQL audit: the crash audit against the postgres backend, and what limitd
// does when PostgreSQL itself goes away, stops answering, or holds a lock a write waits
// on. It needs a server: LIMIT_TEST_POSTGRES_URL (as the storage-postgres tests; set by
// .ci/setup.d/postgres.sh) or DATABASE_URL. Each test works in a schema of its own.

// pgTestURL returns the test server's URL, or skips the test.
func pgTestURL(t *testing.T) string {
	t.Helper()
	for _, env := range []string{"LIMIT_TEST_POSTGRES_URL", "DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			return u
		}
	}
	t.Skip("PostgreSQL audit skipped: neither LIMIT_TEST_POSTGRES_URL nor DATABASE_URL is set (source .ci/setup.d/postgres.sh as root)")
	return ""
}

// pgSchema creates a fresh schema, dropped at cleanup, and returns the server's URL with
// search_path set to it, and the schema's name.
func pgSchema(t *testing.T, base string) (string, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "limit_e2e_" + hex.EncodeToString(b[:])
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("the test server's URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", strings.ReplaceAll(schema, "_", "-"))
	u.RawQuery = q.Encode()
	return u.String(), schema
}

// postgresAuditConfig is the storage config of TestCrashAudit's postgres run: limitd,
// and in one round its storage plugin, SIGKILLed under concurrent load, in a schema of
// its own; it skips the run when there is no server.
func postgresAuditConfig(t *testing.T) string {
	u, _ := pgSchema(t, pgTestURL(t))
	return fmt.Sprintf("url = %q", u)
}

// pgDaemon starts limitd on the postgres backend with the given URL and extra config.
func pgDaemon(t *testing.T, connURL, extra string) (*daemon, string) {
	t.Helper()
	pluginDir := auditPluginDir(t, "postgres", false)
	cfg := auditConfig(t, "postgres", fmt.Sprintf("url = %q\n%s", connURL, extra), pluginDir, t.TempDir(), false)
	return start(t, cfg), pluginDir
}

// storageHealth returns the host's health status and its storage plugin's entry.
func storageHealth(t *testing.T, d *daemon) (string, client.PluginStatus) {
	t.Helper()
	h, err := d.c.Health(ctx)
	if err != nil && h == nil {
		t.Fatalf("health: %v", err)
	}
	for _, p := range h.Plugins {
		if p.Kind == "storage" {
			return h.Status, p
		}
	}
	t.Fatalf("no storage plugin in %+v", h.Plugins)
	return "", client.PluginStatus{}
}

// waitHealth waits up to 10s for the storage entry's healthy to become want.
func waitHealth(t *testing.T, d *daemon, want bool) (string, client.PluginStatus) {
	t.Helper()
	var (
		status string
		st     client.PluginStatus
	)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if status, st = storageHealth(t, d); st.Healthy == want {
			return status, st
		}
	}
	t.Fatalf("/v1/health: storage healthy stayed %v for 10s, want %v: status %s, %+v", st.Healthy, want, status, st)
	return status, st
}

// TestPostgresOutage cuts limitd's storage off PostgreSQL (every connection dropped, new
// ones refused, as when the server stops) in the middle of concurrent writes, and brings
// it back: while it is away calls must answer 503 problem+json promptly and /v1/health
// must say the backend is unhealthy; afterwards the plugin must reconnect by itself (the
// same process), health be ok again, and every acknowledged write be there. Then the same
// with pg_terminate_backend of the plugin's sessions.
func TestPostgresOutage(t *testing.T) {
	base := pgTestURL(t)
	u, schema := pgSchema(t, base)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	target := pu.Host
	if pu.Port() == "" {
		target = net.JoinHostPort(pu.Hostname(), "5432")
	}
	p := testproxy.New(t, target)
	pu.Host = fmt.Sprintf("127.0.0.1:%d", p.Port())
	d, _ := pgDaemon(t, pu.String(), `connect_timeout = "1s"`)
	pid, _ := storagePID(t, d)
	a := newAudit()
	st := &opStats{}
	rng := mrand.New(mrand.NewPCG(auditSeed(t), 0))
	lctx, stop := context.WithCancel(ctx)
	wg := a.load(lctx, d, rng, 0, false, st)
	time.Sleep(500 * time.Millisecond)

	p.Down()
	outage := time.Now()
	time.Sleep(300 * time.Millisecond) // the writers meet the outage
	sid := mustSession(t, a)
	for i := range 3 {
		began := time.Now()
		status, h, body := d.raw("POST", "/v1/traces", "application/json", []byte(fmt.Sprintf(`{"session_id":%q,"data":{"outage":%d}}`, sid, i)))
		if took := time.Since(began); took > 10*time.Second {
			t.Errorf("a write while PostgreSQL is away took %v to answer", took)
		}
		mustProblem(t, status, h, body, 503)
		if i == 0 {
			t.Logf("while PostgreSQL is away: 503 %v", body["detail"])
		}
	}
	hs, ent := waitHealth(t, d, false)
	t.Logf("/v1/health while PostgreSQL is away: %s, %+v (%v after the outage began)", hs, ent, time.Since(outage).Round(time.Millisecond))
	if hs == "ok" || !strings.Contains(ent.Detail, "127.0.0.1") {
		t.Errorf("/v1/health while PostgreSQL is away: status %q, storage %+v; want degraded, naming the server", hs, ent)
	}

	p.Up()
	waitHealth(t, d, true)
	if hs, _ := storageHealth(t, d); hs != "ok" {
		t.Errorf("/v1/health once PostgreSQL is back: %s", hs)
	}
	time.Sleep(500 * time.Millisecond) // the writers go on against the server that is back
	st.kill()                          // the calls the stop cuts short do not count
	stop()
	wg.Wait()
	if _, err := d.c.CreateTrace(ctx, sid, map[string]any{"after": "outage"}); err != nil {
		t.Errorf("a write once PostgreSQL is back: %v", err)
	}
	if npid, restarts := storagePID(t, d); npid != pid || restarts != 0 {
		t.Errorf("the storage plugin was replaced (pid %d→%d, %d restarts): it should reconnect by itself", pid, npid, restarts)
	}
	st.mu.Lock()
	t.Logf("outage: acknowledged %v, failed %v", st.ok, st.fail)
	for op, e := range st.errs {
		if !strings.Contains(e, "503") {
			t.Errorf("a %s failed during the outage other than with 503: %s", op, e)
		}
	}
	st.mu.Unlock()
	a.check(t, d, "after the outage")

	// pg_terminate_backend of every session of the plugin, under load: at most the calls
	// in flight fail, with 503, and the writes go on.
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	st = &opStats{}
	lctx, stop = context.WithCancel(ctx)
	wg = a.load(lctx, d, rng, 1, false, st)
	time.Sleep(300 * time.Millisecond)
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t`,
		strings.ReplaceAll(schema, "_", "-")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st.kill() // the calls the stop cuts short do not count
	stop()
	wg.Wait()
	st.mu.Lock()
	t.Logf("pg_terminate_backend of %d sessions under load: acknowledged %v, failed %v %v", n, st.ok, st.fail, st.errs)
	for op, e := range st.errs {
		if !strings.Contains(e, "503") {
			t.Errorf("a %s failed after pg_terminate_backend other than with 503: %s", op, e)
		}
	}
	st.mu.Unlock()
	if n == 0 {
		t.Error("no session of the plugin to terminate")
	}
	a.check(t, d, "after pg_terminate_backend")
}

// TestPostgresLockWait: a write waiting on a lock another session holds (a long
// transaction in psql) must answer 503 problem+json after statement_timeout, not hang for
// as long as the lock is held; reads and health go on meanwhile, and writes work once the
// lock is gone.
func TestPostgresLockWait(t *testing.T) {
	base := pgTestURL(t)
	u, schema := pgSchema(t, base)
	d, _ := pgDaemon(t, u, `statement_timeout = "1s"`)
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "locks"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"before": "lock"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// Writes wait on this lock; reads do not.
	if _, err := tx.Exec(ctx, "LOCK TABLE "+schema+".limit_kv IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ name, path, body string }{
		{"create trace", "/v1/traces", fmt.Sprintf(`{"session_id":%q,"data":{"during":"lock"}}`, s.ID)},
		{"append", "/v1/traces/" + tr.ID + "/provenance", `{"kind":"step","agent":"audit","data":{}}`},
	} {
		began := time.Now()
		status, h, body := d.raw("POST", w.path, "application/json", []byte(w.body))
		took := time.Since(began)
		t.Logf("%s against a held lock: %d after %v: %v", w.name, status, took.Round(time.Millisecond), body["detail"])
		if took > 10*time.Second {
			t.Errorf("%s waited %v on a lock with statement_timeout 1s", w.name, took)
		}
		mustProblem(t, status, h, body, 503)
	}
	if _, err := d.c.GetTrace(ctx, tr.ID); err != nil {
		t.Errorf("a read while the lock is held: %v", err)
	}
	if _, ent := storageHealth(t, d); !ent.Healthy {
		t.Errorf("storage unhealthy while only a lock is held: %+v", ent)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"after": "lock"}); err != nil {
		t.Errorf("a write once the lock is gone: %v", err)
	}
	if e, err := d.c.AppendProvenance(ctx, tr.ID, "step", "audit", nil); err != nil {
		t.Errorf("an append once the lock is gone: %v", err)
	} else if v, err := d.c.VerifyProvenance(ctx, tr.ID); err != nil || !v.Valid {
		t.Errorf("trace after the lock: %+v %v (entry %d)", v, err, e.Index)
	}
}

// TestPostgresManyClients: 64 clients writing at once, through the default pool of 16
// connections, all succeed, and every acknowledged write is there.
func TestPostgresManyClients(t *testing.T) {
	u, _ := pgSchema(t, pgTestURL(t))
	d, _ := pgDaemon(t, u, "")
	a := newAudit()
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "many"})
	if err != nil {
		t.Fatal(err)
	}
	a.sessions[s.ID] = true
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	began := time.Now()
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 5 {
				tr, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"client": i, "n": n})
				if err == nil {
					a.entry(tr.ID, s.ID, tr.Length-1, tr.Head)
					var e *client.Entry
					if e, err = d.c.AppendProvenance(ctx, tr.ID, "step", "audit", nil); err == nil {
						a.entry(tr.ID, s.ID, e.Index, e.Hash)
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("64 clients × 5 traces (create + append) in %v", time.Since(began).Round(time.Millisecond))
	for i, err := range errs {
		if i == 5 {
			t.Errorf("… %d failures in all", len(errs))
			break
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == 429 {
			continue // the session's concurrency limit, not the storage
		}
		t.Errorf("a write of 64 concurrent clients failed: %v", err)
	}
	a.check(t, d, "after 64 concurrent clients")
}
