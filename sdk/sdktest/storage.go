package sdktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// CaseTimeout bounds one conformance case, so a hung backend fails the case instead of
// hanging the run.
const CaseTimeout = 2 * time.Minute

// StorageCase is one conformance check of a storage backend. Run returns nil when the
// backend behaves as the protocol says, or an error that tells what it did instead.
type StorageCase struct {
	// Name identifies the case, e.g. "scan-pagination"; it is also a subtest name.
	Name string
	// Run performs the check against s. Each call uses fresh namespaces of its own and
	// removes its keys before returning.
	Run func(ctx context.Context, s storage.Storage) error
}

// RunStorage runs every case of StorageCases against s, each as a subtest.
func RunStorage(t *testing.T, s storage.Storage) {
	t.Helper()
	if s == nil {
		t.Fatal("sdktest.RunStorage: storage is nil")
	}
	for _, c := range StorageCases() {
		t.Run(c.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), CaseTimeout)
			defer cancel()
			if err := runCase(ctx, c, s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// CheckStorage runs every case of StorageCases against s, one after the other, and calls
// report (if not nil) after each with the case's name, its error (nil when it passed) and
// how long it took. It returns how many cases passed and failed. It is what a CLI such as
// `limitctl plugin check` calls.
func CheckStorage(ctx context.Context, s storage.Storage, report func(name string, err error, elapsed time.Duration)) (passed, failed int) {
	for _, c := range StorageCases() {
		start := time.Now()
		var err error
		if s == nil {
			err = fmt.Errorf("storage is nil")
		} else {
			cctx, cancel := context.WithTimeout(ctx, CaseTimeout)
			err = runCase(cctx, c, s)
			cancel()
		}
		if err != nil {
			failed++
		} else {
			passed++
		}
		if report != nil {
			report(c.Name, err, time.Since(start))
		}
	}
	return passed, failed
}

// runCase runs c and turns a panic in it (a backend returning something the case did not
// expect) into a failure of that case alone.
func runCase(ctx context.Context, c StorageCase, s storage.Storage) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("case panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return c.Run(ctx, s)
}

// LaunchStorage starts the storage plugin binary at path the way the host does (mutual TLS,
// only env as its environment, the plugin's fast path when it offers one), checks that it
// is a storage plugin, and configures it with configJSON (nil means "{}"; checked and
// given its defaults as the host does, see ApplySchema) and dataDir. It
// returns the plugin's client, which implements storage.Storage, and a function that stops
// the plugin process; call it when done.
func LaunchStorage(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (storage.Storage, func(), error) {
	return launchStorage(ctx, storage.PluginSet(), path, env, configJSON, dataDir, opts...)
}

// LaunchStorageGRPC is LaunchStorage with a client that makes every call over gRPC and
// ignores the plugin's fast path, so a suite can check both transports.
func LaunchStorageGRPC(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (storage.Storage, func(), error) {
	return launchStorage(ctx, storage.PluginSetGRPCOnly(), path, env, configJSON, dataDir, opts...)
}

// Transport names what carries a plugin client's storage calls ("unix" for the fast path,
// "grpc"), or "in-process" for anything else.
func Transport(s storage.Storage) string {
	if c, ok := s.(interface{ Transport() string }); ok {
		return c.Transport()
	}
	return "in-process"
}

func launchStorage(ctx context.Context, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (storage.Storage, func(), error) {
	return launch[storage.Storage](ctx, base.KindStorage, set, path, env, configJSON, dataDir, opts...)
}

// namespaces hands out the namespaces of one run of a case and remembers them, so the run
// can delete what it wrote.
type namespaces struct {
	prefix string
	used   []string
}

// newNamespaces returns the namespace generator of one run of the named case.
func newNamespaces(caseName string) *namespaces {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(caseName))
	if len(name) > 40 {
		name = name[:40]
	}
	return &namespaces{prefix: "sdktest-" + name + "-" + hex.EncodeToString(b[:])}
}

// ns returns the run's namespace named tag ("" for the run's main namespace).
func (n *namespaces) ns(tag string) string {
	name := n.prefix
	if tag != "" {
		name += "/" + tag
	}
	for _, u := range n.used {
		if u == name {
			return name
		}
	}
	n.used = append(n.used, name)
	return name
}

// cleanup deletes every key of every namespace the run used. It only ever scans from the
// start of a namespace, so it still terminates against a backend whose pagination is broken.
func (n *namespaces) cleanup(ctx context.Context, s storage.Storage) error {
	for _, ns := range n.used {
		for round := 0; ; round++ {
			if round > 100 {
				return fmt.Errorf("namespace %q still holds keys after deleting them 100 times", ns)
			}
			res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit, KeysOnly: true})
			if err != nil {
				return fmt.Errorf("scan namespace %q: %w", ns, err)
			}
			if len(res.Items) == 0 {
				break
			}
			ops := make([]storage.Op, len(res.Items))
			for i, kv := range res.Items {
				ops[i] = storage.Op{Kind: storage.OpDelete, Key: kv.Key}
			}
			if err := s.Batch(ctx, ns, ops); err != nil {
				return fmt.Errorf("delete keys of namespace %q: %w", ns, err)
			}
		}
	}
	return nil
}

// storageCase builds a case whose body receives a fresh namespace generator at every run
// and whose keys are deleted afterwards. A cleanup failure fails a case that passed.
func storageCase(name string, run func(ctx context.Context, s storage.Storage, n *namespaces) error) StorageCase {
	return StorageCase{Name: name, Run: func(ctx context.Context, s storage.Storage) error {
		n := newNamespaces(name)
		err := run(ctx, s, n)
		if cerr := n.cleanup(ctx, s); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup after the case: %w", cerr)
		}
		return err
	}}
}
