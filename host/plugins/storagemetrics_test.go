package plugins

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// TestStorageCallMetrics: every call through the host's storage handle is timed by
// operation, and one that fails is counted by operation and kind of failure.
func TestStorageCallMetrics(t *testing.T) {
	ctx := context.Background()
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "mem", "memstore"), hclog.NewNullLogger(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := NewStorage(m)
	reg := prometheus.NewRegistry()
	reg.MustRegister(st.Collectors()...)
	for range 2 {
		if err := st.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.Get(ctx, "ns", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "ns", nil, []byte("v")); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("put of an empty key: %v", err)
	}
	for _, c := range st.Collectors() {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			key := f.GetName()
			for _, l := range s.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if h := s.GetHistogram(); h != nil {
				got[key] = float64(h.GetSampleCount())
			} else {
				got[key] = s.GetCounter().GetValue()
			}
		}
	}
	for k, want := range map[string]float64{
		"limit_storage_call_duration_seconds op=put":          3,
		"limit_storage_call_duration_seconds op=get":          1,
		"limit_storage_call_errors_total kind=invalid op=put": 1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
}
