package memstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

func TestConformance(t *testing.T) {
	sdktest.RunStorage(t, memstore.New())
}

func TestPluginInfo(t *testing.T) {
	info := memstore.New().PluginInfo()
	if info.Name != "memory" || info.Kind != base.KindStorage {
		t.Fatalf("PluginInfo: name %q kind %q, want %q %q", info.Name, info.Kind, "memory", base.KindStorage)
	}
	if n := len(memstore.New().ConfigSchema().Attributes); n != 0 {
		t.Fatalf("ConfigSchema: %d attributes, want none", n)
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		config  string
		wantErr bool
	}{
		{``, false},
		{`{}`, false},
		{`{"path": "/tmp/x"}`, true},
		{`[]`, true},
	} {
		ds := memstore.New().Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tc.config)})
		if ds.HasErrors() != tc.wantErr {
			t.Errorf("Configure(%q): diagnostics %v, want errors: %v", tc.config, ds, tc.wantErr)
		}
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, _, err := s.Get(ctx, "ns", []byte("k"))
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get after Close: error %v, want one wrapping storage.ErrUnavailable", err)
	}
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put after Close: error %v, want one wrapping storage.ErrUnavailable", err)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := memstore.New()
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: error %v, want context.Canceled", err)
	}
	if _, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Scan with a cancelled context: error %v, want context.Canceled", err)
	}
}

func TestScanByteCap(t *testing.T) {
	// Three values of 15 MiB: the first two fit under MaxScanBytes (32 MiB), the third
	// does not, so the page stops at two and says more follow.
	ctx := context.Background()
	s := memstore.New()
	v := make([]byte, 15<<20)
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Put(ctx, "ns", []byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || !res.More {
		t.Fatalf("scan of 45 MiB: %d items, More %v; want 2 items and More", len(res.Items), res.More)
	}
	res, err = s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 3 || res.More {
		t.Fatalf("keys-only scan: %d items, More %v; want 3 items and no More (values do not count)", len(res.Items), res.More)
	}
}

// BenchmarkMemstore measures the reference backend in-process.
func BenchmarkMemstore(b *testing.B) {
	sdktest.BenchStorage(b, "", memstore.New())
}
