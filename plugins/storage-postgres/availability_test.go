package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/limitgraph/limit/internal/testproxy"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// proxiedStore configures a store whose connections go through a proxy to the test
// server, with the given extra config attributes.
func proxiedStore(t *testing.T, extra map[string]any) (*store, *testproxy.Proxy) {
	t.Helper()
	u, _, _ := freshSchema(t)
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	p := testproxy.New(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	viaProxy := strings.Replace(u, fmt.Sprintf("@%s:%d", cfg.Host, cfg.Port), fmt.Sprintf("@127.0.0.1:%d", p.Port()), 1)
	if viaProxy == u {
		t.Fatalf("cannot point %s at the proxy: the URL must name host:port", testURLEnv)
	}
	conf := map[string]any{"url": viaProxy, "connect_timeout": "1s"}
	for k, v := range extra {
		conf[k] = v
	}
	b, _ := json.Marshal(conf)
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { s.Close() })
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: b}); ds.HasErrors() {
		t.Fatal(ds)
	}
	return s, p
}

// TestHealthFollowsServer: the backend's Health (shown in the host's /v1/health) must
// say unhealthy while the server cannot be reached, naming it, and healthy once it is
// back; without it limitd reported "ok" throughout an outage.
func TestHealthFollowsServer(t *testing.T) {
	ctx := context.Background()
	s, p := proxiedStore(t, nil)
	if h := s.Health(ctx); !h.OK {
		t.Fatalf("health with the server up: %+v", h)
	}
	p.Down()
	start := time.Now()
	h := s.Health(ctx)
	if h.OK || !strings.Contains(h.Detail, fmt.Sprintf("127.0.0.1:%d", p.Port())) {
		t.Errorf("health with the server down: %+v, want not OK naming 127.0.0.1:%d", h, p.Port())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("health took %v with a 1s connect timeout", d)
	}
	p.Up()
	if h := s.Health(ctx); !h.OK {
		t.Errorf("health once the server is back: %+v", h)
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Errorf("put once the server is back: %v", err)
	}
}

// TestLockWaitTimesOut: a statement waiting on a row lock another session holds must
// fail as unavailable after statement_timeout, not wait for as long as the lock is held
// (the API request hung with it, forever when the other session never ends).
func TestLockWaitTimesOut(t *testing.T) {
	ctx := context.Background()
	u, schema, _ := freshSchema(t)
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { s.Close() })
	conf, _ := json.Marshal(map[string]any{"url": u, "statement_timeout": "1s"})
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: conf}); ds.HasErrors() {
		t.Fatal(ds)
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	admin := adminConn(t)
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+schema+".limit_kv WHERE key = 'k' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		do   func(context.Context) error
	}{
		{"put", func(ctx context.Context) error { return s.Put(ctx, "ns", []byte("k"), []byte("v2")) }},
		{"batch", func(ctx context.Context) error {
			return s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("k"), Value: []byte("v3")}, {Kind: storage.OpPut, Key: []byte("k2"), Value: []byte("x")}})
		}},
		{"cas", func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k"), ExpectPresent: true, Expected: []byte("v1"), Value: []byte("v4")})
			return err
		}},
	}
	for _, call := range calls {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		start := time.Now()
		err := call.do(cctx)
		cancel()
		d := time.Since(start)
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "statement_timeout") {
			t.Errorf("%s against a held row lock: %v after %v, want ErrUnavailable naming statement_timeout", call.name, err, d)
		}
		if d > 5*time.Second {
			t.Errorf("%s waited %v on the lock with statement_timeout 1s", call.name, d)
		}
	}
	// The lock released, the value is the last committed one, and writes work again.
	_ = tx.Rollback(ctx)
	if v, ok, err := s.Get(ctx, "ns", []byte("k")); err != nil || !ok || string(v) != "v1" {
		t.Errorf("after the timeouts: %q %v %v, want v1", v, ok, err)
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v5")); err != nil {
		t.Errorf("put after the lock is gone: %v", err)
	}
}

// TestPartitionedServerTimesOut: a server that stops answering on open connections (a
// network partition: no reset, no refusal) must make calls fail as unavailable within
// statement_timeout + connect_timeout, not hang until TCP gives up many minutes later;
// Health must say so too, and everything works again when the network heals.
func TestPartitionedServerTimesOut(t *testing.T) {
	ctx := context.Background()
	s, p := proxiedStore(t, map[string]any{"statement_timeout": "1s"})
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Put(cctx, "ns", []byte("k"), []byte("v2"))
	if d := time.Since(start); !errors.Is(err, storage.ErrUnavailable) || d > 5*time.Second {
		t.Errorf("put to a partitioned server: %v after %v, want ErrUnavailable within statement_timeout + connect_timeout (2s)", err, d)
	}
	start = time.Now()
	if h := s.Health(cctx); h.OK || time.Since(start) > 3*time.Second {
		t.Errorf("health of a partitioned server: %+v after %v", h, time.Since(start))
	}
	p.Thaw()
	p.Down() // the connections the partition left behind are gone
	p.Up()
	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lastErr = s.Put(ctx, "ns", []byte("k"), []byte("v3")); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("put after the partition healed: %v", lastErr)
	}
}

// TestPoolExhaustion: 64 concurrent callers on a pool of 2 connections all get their
// writes done (they wait for a free connection), and Health stays OK meanwhile: a busy
// pool is not a lost server.
func TestPoolExhaustion(t *testing.T) {
	ctx := context.Background()
	u, schema, _ := freshSchema(t)
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { s.Close() })
	conf, _ := json.Marshal(map[string]any{"url": u, "max_conns": 2})
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: conf}); ds.HasErrors() {
		t.Fatal(ds)
	}
	// Hold both connections busy for a moment behind a lock, so the callers queue.
	if err := s.Put(ctx, "ns", []byte("hot"), []byte("0")); err != nil {
		t.Fatal(err)
	}
	admin := adminConn(t)
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+schema+".limit_kv WHERE key = 'hot' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	start := time.Now()
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%02d", i)
			if i < 2 {
				key = "hot"
			}
			if err := s.Put(ctx, "ns", []byte(key), []byte("v")); err != nil {
				errs <- fmt.Errorf("%s: %w", key, err)
			}
		}()
	}
	// Wait until the callers hold both connections (on a loaded machine they take a
	// while to get there); Health must stay OK all along.
	var h storage.Health
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h = s.Health(hctx)
		cancel()
		if !h.OK {
			t.Errorf("health with the pool filling up: %+v, want OK", h)
			break
		}
		if h.Metrics["acquired_conns"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("health with every connection busy: %+v, want OK with 2 acquired connections", h)
			break
		}
	}
	_ = tx.Rollback(ctx)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("put under pool exhaustion: %v", err)
	}
	t.Logf("64 puts through 2 connections in %v; health %+v", time.Since(start).Round(time.Millisecond), h)
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 100})
	if err != nil || len(res.Items) != 63 {
		t.Errorf("scan after the puts: %d items, %v; want 63", len(res.Items), err)
	}
}
