package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/jackc/pgx/v5"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/testproxy"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// testBinary returns the absolute path of the running test binary.
func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// openStore returns an in-process store configured on connURL, closed at cleanup.
func openStore(t testing.TB, connURL string) *store {
	t.Helper()
	s := newStore()
	s.getenv = envOf(nil)
	cfg, _ := json.Marshal(map[string]any{"url": connURL})
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: cfg}); ds.HasErrors() {
		t.Fatalf("configure: %v", ds.Err())
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startPlugin starts the plugin process with env (beyond the serve switch) without
// configuring it.
func startPlugin(t testing.TB, env ...string) (*storage.Client, *plugin.Client) {
	t.Helper()
	pc := base.NewClient(base.LaunchConfig{
		Path: testBinary(t), Kind: base.KindStorage, Plugins: storage.PluginSet(), Env: append([]string{serveEnv + "=1"}, env...),
	})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(context.Background(), pc, base.KindStorage)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*storage.Client), pc
}

func TestConformanceInProcess(t *testing.T) {
	u, _, _ := freshSchema(t)
	sdktest.RunStorage(t, openStore(t, u))
}

// TestConformancePlugin runs the suite through a real plugin process that takes its URL
// from DATABASE_URL, as when the host passes its own DATABASE_URL on.
func TestConformancePlugin(t *testing.T) {
	u, _, _ := freshSchema(t)
	s, stop, err := sdktest.LaunchStorage(context.Background(), testBinary(t),
		[]string{serveEnv + "=1", "DATABASE_URL=" + u}, []byte(`{}`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	sdktest.RunStorage(t, s)
}

// TestConformanceOneConnection runs the suite with a pool of one connection, where every
// request queues for it.
func TestConformanceOneConnection(t *testing.T) {
	u, _, _ := freshSchema(t)
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { s.Close() })
	cfg, _ := json.Marshal(map[string]any{"url": u, "max_conns": 1})
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: cfg}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	sdktest.RunStorage(t, s)
}

func TestPluginInfoAndSchema(t *testing.T) {
	s, _ := startPlugin(t)
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "postgres" || info.Kind != base.KindStorage || info.Version != version.Version ||
		!slices.Contains(info.Capabilities, "durable") {
		t.Errorf("info: %+v", info)
	}
	schema, err := s.Client.ConfigSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]base.Attribute{}
	for _, a := range schema.Attributes {
		attrs[a.Name] = a
	}
	if a, ok := attrs["url"]; !ok || !a.Sensitive || a.Required || a.Type != "string" {
		t.Errorf("url attribute: %+v, want an optional sensitive string", a)
	}
	for _, name := range []string{"max_conns", "connect_timeout"} {
		if _, ok := attrs[name]; !ok {
			t.Errorf("schema lacks %s", name)
		}
	}
}

// TestPluginUnreachableServer checks the diagnostic of an unreachable server through the
// plugin boundary, with the URL in DATABASE_URL: it names host:port, points at no
// attribute (the URL is not in the file) and does not show the password.
func TestPluginUnreachableServer(t *testing.T) {
	port := closedPort(t)
	s, _ := startPlugin(t, fmt.Sprintf("DATABASE_URL=postgres://u:hush-hush@127.0.0.1:%d/db?sslmode=disable", port))
	ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"connect_timeout": "1s"}`)})
	if len(ds) != 1 || ds[0].Severity != base.SeverityError || len(ds[0].Path) != 0 {
		t.Fatalf("got %v, want one error at no attribute", ds)
	}
	msg := ds[0].Error()
	if !strings.Contains(msg, fmt.Sprintf("127.0.0.1:%d", port)) || !strings.Contains(msg, "DATABASE_URL") || strings.Contains(msg, "hush-hush") {
		t.Errorf("diagnostic %q: want host:port and DATABASE_URL named, and no password", msg)
	}
}

// TestSchemaMigrations checks the versioned schema: a fresh schema gets every migration
// recorded, a database left at version 1 is brought to the latest, data survives, and a
// database from a newer plugin is refused.
func TestSchemaMigrations(t *testing.T) {
	ctx := context.Background()
	u, schema, _ := freshSchema(t)
	admin := adminConn(t)
	versions := func() []int {
		rows, err := admin.Query(ctx, "SELECT version FROM "+schema+".limit_schema_migrations ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		v, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	want := []int{}
	for _, m := range migrations {
		want = append(want, m.version)
	}

	s := openStore(t, u)
	if got := versions(); !slices.Equal(got, want) {
		t.Fatalf("fresh database: versions %v, want %v", got, want)
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Roll the schema back to version 1 by hand, as an older plugin left it.
	if _, err := admin.Exec(ctx, "ALTER TABLE "+schema+".limit_kv ALTER COLUMN value SET STORAGE EXTENDED; DELETE FROM "+
		schema+".limit_schema_migrations WHERE version > 1"); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, u)
	if got := versions(); !slices.Equal(got, want) {
		t.Errorf("after migrating from version 1: versions %v, want %v", got, want)
	}
	var storageMode string
	if err := admin.QueryRow(ctx, `SELECT attstorage::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'value'`,
		schema+".limit_kv").Scan(&storageMode); err != nil || storageMode != "e" {
		t.Errorf("value column storage %q (%v), want e (external) after migration 2", storageMode, err)
	}
	if v, ok, err := s.Get(ctx, "ns", []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Errorf("data after migration: %q %v %v", v, ok, err)
	}
	s.Close()

	if _, err := admin.Exec(ctx, "INSERT INTO "+schema+".limit_schema_migrations (version, description) VALUES (99, 'future')"); err != nil {
		t.Fatal(err)
	}
	s2 := newStore()
	s2.getenv = envOf(nil)
	defer s2.Close()
	cfg, _ := json.Marshal(map[string]any{"url": u})
	ds := s2.Configure(ctx, base.ConfigureRequest{Config: cfg})
	if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "newer than this plugin") {
		t.Errorf("Configure on a newer schema: got %v, want an error saying it is newer", ds)
	}
}

// TestConcurrentMigrations starts several stores on one empty schema at once: the
// advisory lock lets exactly one create the tables and the others find them.
func TestConcurrentMigrations(t *testing.T) {
	u, _, _ := freshSchema(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s := newStore()
			s.getenv = envOf(nil)
			defer s.Close()
			cfg, _ := json.Marshal(map[string]any{"url": u})
			if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: cfg}); ds.HasErrors() {
				t.Errorf("concurrent Configure: %v", ds.Err())
			}
		})
	}
	wg.Wait()
}

// terminateBackends ends every server session of the plugin (by application_name) from an
// admin connection and returns how many it ended.
func terminateBackends(t testing.TB, admin *pgx.Conn, appName string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(),
		`SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t`, appName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReconnectAfterTerminate kills the plugin's server sessions with
// pg_terminate_backend, idle and in the middle of a load of writes, and checks that the
// store goes on working on new connections, with every acknowledged write kept.
func TestReconnectAfterTerminate(t *testing.T) {
	ctx := context.Background()
	u, _, app := freshSchema(t)
	admin := adminConn(t)
	s := openStore(t, u)

	if err := s.Put(ctx, "ns", []byte("before"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := terminateBackends(t, admin, app); n == 0 {
		t.Fatal("the plugin has no server session to terminate")
	}
	// Idle connections were all terminated: each call must still succeed.
	if v, ok, err := s.Get(ctx, "ns", []byte("before")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("Get after terminating the sessions: %q %v %v", v, ok, err)
	}
	if err := s.Put(ctx, "ns", []byte("after"), []byte("v")); err != nil {
		t.Fatalf("Put after terminating the sessions: %v", err)
	}

	// Now under load: writers keep going while sessions are terminated again and again.
	var (
		mu       sync.Mutex
		acked    []string
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("w%d/%05d", w, i)
				err := s.Put(ctx, "ns", []byte(k), []byte(k))
				switch {
				case err == nil:
					mu.Lock()
					acked = append(acked, k)
					mu.Unlock()
				case errors.Is(err, storage.ErrUnavailable):
					failures.Add(1)
				default:
					t.Errorf("Put %s: %v", k, err)
					return
				}
			}
		})
	}
	terminated := 0
	for range 5 {
		time.Sleep(60 * time.Millisecond)
		terminated += terminateBackends(t, admin, app)
	}
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d sessions terminated under load; %d puts acknowledged, %d failed as unavailable", terminated, len(acked), failures.Load())
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	// Most writes are retried on a new connection; a few may fail as unavailable, but
	// the store must not be stuck.
	if err := s.Put(ctx, "ns", []byte("final"), []byte("v")); err != nil {
		t.Fatalf("Put after the load: %v", err)
	}
	for _, k := range acked {
		if v, ok, err := s.Get(ctx, "ns", []byte(k)); err != nil || !ok || string(v) != k {
			t.Fatalf("acknowledged %s: %q %v %v", k, v, ok, err)
		}
	}
}

// TestReconnectAfterOutage cuts the plugin off the server (every connection dropped, new
// ones refused), checks that calls fail promptly as unavailable naming the server, then
// restores the network and checks that the same store works again without being
// reconfigured.
func TestReconnectAfterOutage(t *testing.T) {
	ctx := context.Background()
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
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { s.Close() })
	conf, _ := json.Marshal(map[string]any{"url": viaProxy, "connect_timeout": "1s"})
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: conf}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("before")); err != nil {
		t.Fatal(err)
	}

	p.Down()
	for _, call := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"get", func(ctx context.Context) error { _, _, err := s.Get(ctx, "ns", []byte("k")); return err }},
		{"put", func(ctx context.Context) error { return s.Put(ctx, "ns", []byte("k"), []byte("during")) }},
		{"scan", func(ctx context.Context) error {
			_, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
			return err
		}},
	} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := call.do(cctx)
		cancel()
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", p.Port())) {
			t.Errorf("%s while the server is away: got %v, want ErrUnavailable naming 127.0.0.1:%d", call.name, err, p.Port())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v to fail with a 1s connect timeout", call.name, d)
		}
	}

	p.Up()
	var lastErr error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if lastErr = s.Put(ctx, "ns", []byte("k"), []byte("after")); lastErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("the store did not recover once the server was back: %v", lastErr)
	}
	if v, ok, err := s.Get(ctx, "ns", []byte("k")); err != nil || !ok || string(v) != "after" {
		t.Errorf("Get after recovery: %q %v %v", v, ok, err)
	}
}

// TestKeyOrderIgnoresCollation writes keys whose order differs between bytewise and
// linguistic comparison and checks the scan returns them bytewise.
func TestKeyOrderIgnoresCollation(t *testing.T) {
	ctx := context.Background()
	u, _, _ := freshSchema(t)
	s := openStore(t, u)
	keys := []string{"B", "a", "b", "A", "é", "e", "Z", "_", "-", "\x00", "\xff"}
	for _, k := range keys {
		if err := s.Put(ctx, "ns", []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range res.Items {
		got = append(got, string(kv.Key))
	}
	want := slices.Clone(keys)
	slices.Sort(want) // Go compares strings bytewise
	if !slices.Equal(got, want) {
		t.Errorf("scan order %q, want bytewise %q", got, want)
	}
}

// TestScanStopsAtByteBudget writes values whose total exceeds storage.MaxScanBytes and
// checks the page is cut before the budget, with More set, and the next page continues.
func TestScanStopsAtByteBudget(t *testing.T) {
	ctx := context.Background()
	u, _, _ := freshSchema(t)
	s := openStore(t, u)
	big := make([]byte, 12<<20)
	for i := range 4 {
		if err := s.Put(ctx, "ns", fmt.Appendf(nil, "k%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || !res.More {
		t.Fatalf("first page: %d items more=%v, want 2 items (24 MiB of the 32 MiB budget) and more", len(res.Items), res.More)
	}
	res, err = s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10, StartAfter: res.Items[1].Key})
	if err != nil || len(res.Items) != 2 || res.More || len(res.Items[1].Value) != len(big) {
		t.Fatalf("second page: %d items more=%v err=%v", len(res.Items), res.More, err)
	}
}

// TestBatchEdgeCases checks batches the conformance suite leaves out: empty and nil
// values, a key put twice, and a key put then deleted in one batch.
func TestBatchEdgeCases(t *testing.T) {
	u, _, _ := freshSchema(t)
	checkBatchEdgeCases(t, openStore(t, u))
}

// checkBatchEdgeCases writes one tricky batch and checks the state it leaves.
func checkBatchEdgeCases(t *testing.T, s storage.Storage) {
	t.Helper()
	ctx := context.Background()
	if err := s.Put(ctx, "ns", []byte("e"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: []byte("a"), Value: []byte{}},
		{Kind: storage.OpPut, Key: []byte("b"), Value: nil},
		{Kind: storage.OpPut, Key: []byte("c"), Value: []byte("1")},
		{Kind: storage.OpPut, Key: []byte("c"), Value: []byte("2")},
		{Kind: storage.OpDelete, Key: []byte("d")},
		{Kind: storage.OpPut, Key: []byte("d"), Value: []byte("x")},
		{Kind: storage.OpDelete, Key: []byte("d")},
		{Kind: storage.OpDelete, Key: []byte("e")},
		{Kind: storage.OpPut, Key: []byte("e"), Value: []byte("new")},
	}
	if err := s.Batch(ctx, "ns", ops); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "", "b": "", "c": "2", "e": "new"}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Items {
		got[string(kv.Key)] = string(kv.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the batch: %v, want %v", got, want)
	}
}

// TestConditionalBatchAgainstCAS races conditional batches (assert-absent, then put)
// against compare-and-swap creations of the same key: the batches run SERIALIZABLE, the
// swaps as plain statements, and still exactly one claim of the key may win.
func TestConditionalBatchAgainstCAS(t *testing.T) {
	ctx := context.Background()
	u, _, _ := freshSchema(t)
	s := openStore(t, u)
	for round := range 20 {
		key := fmt.Appendf(nil, "slot%d", round)
		var (
			wins atomic.Int64
			wg   sync.WaitGroup
		)
		for w := range 8 {
			wg.Go(func() {
				val := fmt.Appendf(nil, "w%d", w)
				if w%2 == 0 {
					res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: key, Value: val})
					if err != nil {
						t.Errorf("cas: %v", err)
					} else if res.Swapped {
						wins.Add(1)
					}
					return
				}
				err := s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpAssertAbsent, Key: key}, {Kind: storage.OpPut, Key: key, Value: val}})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, storage.ErrConditionFailed):
					t.Errorf("conditional batch: %v", err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d claims of %s won, want exactly 1", round, n, key)
		}
	}
}
