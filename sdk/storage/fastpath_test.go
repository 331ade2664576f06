package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// serveEnv makes the test binary serve a storage plugin: "faulty" serves faultyStore,
// "old" serves a plugin built before the fast path existed.
const serveEnv = "LIMIT_STORAGE_TEST_SERVE"

func TestMain(m *testing.M) {
	switch os.Getenv(serveEnv) {
	case "faulty":
		storage.Serve(faultyStore{memstore.New()})
		return
	case "old":
		base.Serve(base.KindStorage, &oldPlugin{impl: memstore.New()})
		return
	}
	os.Exit(m.Run())
}

// faultyStore is memstore with failures on chosen keys, to compare how both transports
// carry errors: "nospace" and "internal" fail puts, "panic" panics, and a get or put of
// "block" records its arrival at "arrived", waits for its context to end, then records the
// context's error at "seen-cancel"; a get of "blocking" answers how many gets and puts of
// "block" are waiting.
type faultyStore struct{ *memstore.Store }

// blocked counts the gets and puts of "block" waiting in the plugin process.
var blocked atomic.Int64

func (f faultyStore) Put(ctx context.Context, ns string, key, value []byte) error {
	switch string(key) {
	case "nospace":
		return fmt.Errorf("write %q: %w", key, storage.ErrNoSpace)
	case "internal":
		return errors.New("disk on fire")
	case "panic":
		panic("backend bug")
	case "block":
		blocked.Add(1)
		defer blocked.Add(-1)
		_ = f.Store.Put(context.Background(), ns, []byte("arrived"), []byte("1"))
		<-ctx.Done()
		_ = f.Store.Put(context.Background(), ns, []byte("seen-cancel"), []byte(ctx.Err().Error()))
		return ctx.Err()
	}
	return f.Store.Put(ctx, ns, key, value)
}

// Batch fails as Put does when a put in it is of a faulty key, so that a merged batch of
// puts fails as its faulty put would.
func (f faultyStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	for _, op := range ops {
		if k := string(op.Key); op.Kind == storage.OpPut && (k == "nospace" || k == "internal" || k == "panic") {
			return f.Put(ctx, ns, op.Key, op.Value)
		}
	}
	return f.Store.Batch(ctx, ns, ops)
}

func (f faultyStore) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	switch string(key) {
	case "blocking":
		return []byte(strconv.FormatInt(blocked.Load(), 10)), true, nil
	case "block":
		blocked.Add(1)
		defer blocked.Add(-1)
		_ = f.Store.Put(context.Background(), ns, []byte("arrived"), []byte("1"))
		<-ctx.Done()
		_ = f.Store.Put(context.Background(), ns, []byte("seen-cancel"), []byte(ctx.Err().Error()))
		return nil, false, ctx.Err()
	}
	return f.Store.Get(ctx, ns, key)
}

// oldPlugin serves the storage service as a plugin without OpenFastPath does.
type oldPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl storage.Storage
}

func (p *oldPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.impl})
	limitv1.RegisterStorageServer(s, &oldServer{impl: p.impl})
	return nil
}

func (p *oldPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("plugin side only")
}

// oldServer implements the two methods the test needs; OpenFastPath stays unimplemented.
type oldServer struct {
	limitv1.UnimplementedStorageServer
	impl storage.Storage
}

func (s *oldServer) Get(ctx context.Context, r *limitv1.GetRequest) (*limitv1.GetResponse, error) {
	v, ok, err := s.impl.Get(ctx, r.GetNamespace(), r.GetKey())
	return &limitv1.GetResponse{Found: ok, Value: v}, err
}

func (s *oldServer) Put(ctx context.Context, r *limitv1.PutRequest) (*limitv1.PutResponse, error) {
	return &limitv1.PutResponse{}, s.impl.Put(ctx, r.GetNamespace(), r.GetKey(), r.GetValue())
}

// launched is a plugin process started by a test.
type launched struct {
	*storage.Client
	plugin *plugin.Client
}

// conn returns the plugin's gRPC connection.
func (l launched) conn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	rpc, err := l.plugin.Client()
	if err != nil {
		t.Fatal(err)
	}
	return rpc.(*plugin.GRPCClient).Conn
}

// launch starts the test binary as the plugin of mode, with the plugin set set, and
// kills it when the test ends.
func launch(t testing.TB, mode string, set plugin.PluginSet) launched {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := base.NewClient(base.LaunchConfig{Path: exe, Kind: base.KindStorage, Plugins: set, Env: []string{serveEnv + "=" + mode}})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(t.Context(), pc, base.KindStorage)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*storage.Client)
	if ds := c.Configure(t.Context(), base.ConfigureRequest{Config: []byte("{}"), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	return launched{Client: c, plugin: pc}
}

func TestFastPathIsUsed(t *testing.T) {
	fast := launch(t, "faulty", storage.PluginSet())
	if got := fast.Transport(); got != "unix" {
		t.Fatalf("transport %q (%v), want unix", got, fast.FastPathError())
	}
	slow := launch(t, "faulty", storage.PluginSetGRPCOnly())
	if got := slow.Transport(); got != "grpc" {
		t.Fatalf("GRPC-only client: transport %q, want grpc", got)
	}
	for _, c := range []launched{fast, slow} {
		if err := c.Ping(t.Context()); err != nil {
			t.Fatalf("ping over %s: %v", c.Transport(), err)
		}
	}
}

func TestOldPluginFallsBackToGRPC(t *testing.T) {
	c := launch(t, "old", storage.PluginSet())
	if got := c.Transport(); got != "grpc" {
		t.Fatalf("transport %q, want grpc for a plugin without OpenFastPath", got)
	}
	if err := c.FastPathError(); status.Code(errors.Unwrap(err)) != codes.Unimplemented {
		t.Fatalf("fast path error %v, want UNIMPLEMENTED", err)
	}
	if err := c.Put(t.Context(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.Get(t.Context(), "ns", []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get: %q %v %v, want v", v, ok, err)
	}
}

func TestFastPathErrorsMatchGRPC(t *testing.T) {
	fast := launch(t, "faulty", storage.PluginSet())
	slow := launch(t, "faulty", storage.PluginSetGRPCOnly())
	ctx := t.Context()
	for _, s := range []storage.Storage{fast, slow} {
		if err := s.Put(ctx, "ns", []byte("a"), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		want error // a sentinel the error must wrap, or nil for an error without one
		call func(s storage.Storage) error
	}{
		{"no space", storage.ErrNoSpace, func(s storage.Storage) error { return s.Put(ctx, "ns", []byte("nospace"), nil) }},
		{"internal", nil, func(s storage.Storage) error { return s.Put(ctx, "ns", []byte("internal"), nil) }},
		{"panic", nil, func(s storage.Storage) error { return s.Put(ctx, "ns", []byte("panic"), nil) }},
		{"condition", storage.ErrConditionFailed, func(s storage.Storage) error {
			return s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("b")}, {Kind: storage.OpAssertAbsent, Key: []byte("a")}})
		}},
		{"condition on value", storage.ErrConditionFailed, func(s storage.Storage) error {
			return s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpAssertValue, Key: []byte("a"), Value: []byte("2")}})
		}},
		{"deadline", context.DeadlineExceeded, func(s storage.Storage) error {
			c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, _, err := s.Get(c, "ns", []byte("block"))
			return err
		}},
		{"not found is no error", nil, func(s storage.Storage) error {
			_, ok, err := s.Get(ctx, "ns", []byte("missing"))
			if err == nil && ok {
				return errors.New("found a missing key")
			}
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ef, eg := tc.call(fast), tc.call(slow)
			if tc.name == "not found is no error" {
				if ef != nil || eg != nil {
					t.Fatalf("fast %v, gRPC %v; want no error", ef, eg)
				}
				return
			}
			if ef == nil || eg == nil {
				t.Fatalf("fast %v, gRPC %v; want an error from both", ef, eg)
			}
			if tc.name != "deadline" && ef.Error() != eg.Error() {
				t.Fatalf("errors differ:\n fast: %v\n gRPC: %v", ef, eg)
			}
			if tc.want != nil && (!errors.Is(ef, tc.want) || !errors.Is(eg, tc.want)) {
				t.Fatalf("fast %v, gRPC %v; want both to wrap %v", ef, eg, tc.want)
			}
			var cf, cg *storage.ConditionError
			if errors.As(ef, &cf) != errors.As(eg, &cg) || (cf != nil && (cf.Op != cg.Op || !bytes.Equal(cf.Key, cg.Key))) {
				t.Fatalf("condition errors differ: fast %#v, gRPC %#v", cf, cg)
			}
			if tc.name == "condition" && (cf == nil || cf.Op != 1 || string(cf.Key) != "a") {
				t.Fatalf("fast condition error %#v, want op 1 on key a", cf)
			}
			if storage.IsUnavailable(ef) || storage.IsUnavailable(eg) {
				t.Fatalf("fast %v, gRPC %v: counted as unavailable, which only a lost plugin should be", ef, eg)
			}
		})
	}
}

func TestFastPathCancelReachesPlugin(t *testing.T) {
	c := launch(t, "faulty", storage.PluginSet())
	get := func(ctx context.Context, ns string) error { _, _, err := c.Get(ctx, ns, []byte("block")); return err }
	put := func(ctx context.Context, ns string) error { return c.Put(ctx, ns, []byte("block"), nil) }
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, ns string) error
		ctx  func(d time.Duration) (context.Context, context.CancelFunc)
		want error
	}{
		{"read deadline", get, deadlineIn(t), context.DeadlineExceeded},
		{"read cancel", get, cancelIn(t), context.Canceled},
		{"write deadline", put, deadlineIn(t), context.DeadlineExceeded},
		{"write cancel", put, cancelIn(t), context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A call whose context ends before it is sent never reaches the plugin, and
			// rightly so; on a loaded machine sending takes a while: such an attempt is
			// made again with a longer delay.
			var ns string
			for attempt, d := range []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second} {
				ns = fmt.Sprintf("cancel-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), attempt)
				ctx, cancel := tc.ctx(d)
				err := tc.call(ctx, ns)
				cancel()
				if !errors.Is(err, tc.want) {
					t.Fatalf("call: %v, want %v", err, tc.want)
				}
				_, arrived, err := c.Get(t.Context(), ns, []byte("arrived"))
				if err != nil {
					t.Fatal(err)
				}
				if arrived {
					break
				}
				if attempt == 2 {
					t.Fatalf("the call never reached the plugin, with its context ending %v after it was made", d)
				}
				t.Logf("the call ended %v after it was made, before it reached the plugin; again", d)
			}
			// The plugin's handler must have seen its context end, not keep running.
			deadline := time.Now().Add(30 * time.Second)
			for {
				v, ok, err := c.Get(t.Context(), ns, []byte("seen-cancel"))
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					if string(v) != tc.want.Error() {
						t.Fatalf("plugin saw %q, want %q", v, tc.want)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("the plugin's call was never cancelled")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// deadlineIn returns a context maker with a deadline d from its call.
func deadlineIn(t *testing.T) func(d time.Duration) (context.Context, context.CancelFunc) {
	return func(d time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(t.Context(), d)
	}
}

// cancelIn returns a context maker whose context is cancelled d after its call.
func cancelIn(t *testing.T) func(d time.Duration) (context.Context, context.CancelFunc) {
	return func(d time.Duration) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(d, cancel)
		return ctx, cancel
	}
}

func TestFastPathConcurrentCalls(t *testing.T) {
	c := launch(t, "faulty", storage.PluginSet())
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 4<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := range 100 {
				key := fmt.Appendf(nil, "g%d/k%d", g, i)
				val := fmt.Appendf(nil, "value %d %d", g, i)
				if g == 0 && i%25 == 0 {
					val = append(big, val...) // large frames interleaved with small ones
				}
				if err := c.Put(ctx, "conc", key, val); err != nil {
					errs <- err
					return
				}
				got, ok, err := c.Get(ctx, "conc", key)
				if err != nil || !ok || !bytes.Equal(got, val) {
					errs <- fmt.Errorf("get %s: %d bytes, found %v, %v", key, len(got), ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c.Transport() != "unix" {
		t.Fatalf("transport %q after the load, want unix", c.Transport())
	}
}

func TestFastPathPluginKilled(t *testing.T) {
	c := launch(t, "faulty", storage.PluginSet())
	if c.Transport() != "unix" {
		t.Fatalf("transport %q, want unix", c.Transport())
	}
	pid := c.plugin.ReattachConfig().Pid
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = c.Get(t.Context(), "ns", []byte("block")) })
	}
	// Killed before a call was sent, that call would rightly fail as not sent. Each of the
	// fastConnections connections carries a call the plugin reads; the calls beyond those
	// are sent behind inline reads and wait there unread, so only that many are counted.
	waitBlocking(t, c, min(len(errs), 4))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if !storage.IsUnavailable(err) || errors.Is(err, storage.ErrNotSent) {
			t.Errorf("call %d in flight when the plugin died: %v, want storage.ErrUnavailable, not ErrNotSent (it was sent)", i, err)
		}
	}
	_, _, err := c.Get(t.Context(), "ns", []byte("k"))
	if !storage.IsUnavailable(err) && !errors.Is(err, context.Canceled) {
		t.Fatalf("call after the plugin died: %v, want unavailable or cancelled (what the host retries)", err)
	}
	// A call made once the plugin is gone never reaches it, and says so: the host makes
	// even a compare-and-swap again on the restarted plugin then.
	time.Sleep(50 * time.Millisecond)
	_, err = c.CompareAndSwap(t.Context(), storage.CASRequest{Namespace: "ns", Key: []byte("k"), Value: []byte("v")})
	if !storage.IsUnavailable(err) || !errors.Is(err, storage.ErrNotSent) {
		t.Fatalf("compare-and-swap after the plugin died: %v, want storage.ErrUnavailable and storage.ErrNotSent", err)
	}
}

// waitBlocking waits until at least n gets and puts of "block" are waiting in the
// plugin: on a loaded machine a call takes a while to get there. It asks over gRPC: on the
// fast path, every connection may be held by an inline read of "block".
func waitBlocking(t *testing.T, c launched, n int) {
	t.Helper()
	rpc := limitv1.NewStorageClient(c.conn(t))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		resp, err := rpc.Get(ctx, &limitv1.GetRequest{Namespace: "ns", Key: []byte("blocking")})
		cancel()
		v := resp.GetValue()
		if got, _ := strconv.Atoi(string(v)); err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s blocking calls reached the plugin in 30 s (%v), want %d", v, err, n)
		}
	}
}

func TestFastPathSocketIsGuarded(t *testing.T) {
	c := launch(t, "faulty", storage.PluginSet())
	rpc := limitv1.NewStorageClient(c.conn(t))
	ctx := t.Context()
	if _, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: 99, Connections: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unknown version: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: 1, Connections: 0}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no connections: %v, want INVALID_ARGUMENT", err)
	}
	r, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: 1, Connections: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(r.GetAddress())
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("socket directory mode %v, want 0700", perm)
	}
	// A wrong token gets the connection closed, without an acknowledgement.
	bad, err := net.Dial("unix", r.GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Write(bytes.Repeat([]byte{0}, len(r.GetToken()))); err != nil {
		t.Fatal(err)
	}
	_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("wrong token: read %d bytes, %v; want the connection closed", n, err)
	}
	// The right token is acknowledged, and then the socket is gone: it took its one connection.
	good, err := net.Dial("unix", r.GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Write(r.GetToken()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 1)
	_ = good.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(good, ack); err != nil || ack[0] != 0x6b {
		t.Fatalf("right token: ack %x, %v", ack, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket directory %s still exists after its connections were taken", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if conn, err := net.Dial("unix", r.GetAddress()); err == nil {
		conn.Close()
		t.Fatal("a further connection was accepted")
	}
	if !strings.HasPrefix(filepath.Base(dir), "limit-storage-") {
		t.Fatalf("socket directory %s, want a limit-storage-* directory", dir)
	}
}

// BenchmarkPing measures one empty call over each transport, for comparing changes to the
// fast path (CompareStorage in sdk/sdktest prints the full table).
func BenchmarkPing(b *testing.B) {
	for _, tc := range []struct {
		name string
		set  plugin.PluginSet
	}{{"grpc", storage.PluginSetGRPCOnly()}, {"unix", storage.PluginSet()}} {
		b.Run(tc.name, func(b *testing.B) {
			c := launch(b, "faulty", tc.set)
			for b.Loop() {
				if err := c.Ping(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
