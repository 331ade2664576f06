package opened

import (
	"errors"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
)

type set struct{ path string }

func (s set) String() string { return "path " + s.path }

var (
	errNotConfigured = errors.New("not configured")
	errClosed        = errors.New("closed")
)

func TestSlot(t *testing.T) {
	s := &Slot[set, int]{Name: "test", ErrNotConfigured: errNotConfigured, ErrClosed: errClosed}
	if _, err := s.Get(); err != errNotConfigured {
		t.Fatalf("Get before Configure: %v", err)
	}
	opens := 0
	open := func(v int, fail bool) func() (*int, base.Diagnostics) {
		return func() (*int, base.Diagnostics) {
			opens++
			if fail {
				return nil, base.Diagnostics{base.Errorf(nil, "cannot open")}
			}
			return &v, nil
		}
	}
	if ds := s.Configure(set{"a"}, open(1, true)); !ds.HasErrors() {
		t.Fatal("a failed open was not reported")
	}
	if _, err := s.Get(); err != errNotConfigured {
		t.Fatalf("Get after a failed open: %v", err)
	}
	if ds := s.Configure(set{"a"}, open(1, false)); ds.HasErrors() {
		t.Fatal(ds)
	}
	if ds := s.Configure(set{"a"}, open(2, false)); ds.HasErrors() || opens != 2 {
		t.Fatalf("the same settings again: %v, %d opens", ds, opens)
	}
	ds := s.Configure(set{"b"}, open(3, false))
	if !ds.HasErrors() || !strings.Contains(ds[0].Detail, "path a") || !strings.Contains(ds[0].Detail, "path b") || opens != 2 {
		t.Fatalf("other settings: %v, %d opens", ds, opens)
	}
	if v, err := s.Get(); err != nil || *v != 1 {
		t.Fatalf("Get: %v %v", v, err)
	}
	var closed *int
	if err := s.Close(func(v *int) error { closed = v; return nil }); err != nil || closed == nil || *closed != 1 {
		t.Fatalf("Close: %v, closed %v", err, closed)
	}
	if _, err := s.Get(); err != errClosed {
		t.Fatalf("Get after Close: %v", err)
	}
	if ds := s.Configure(set{"a"}, open(4, false)); !ds.HasErrors() || opens != 2 {
		t.Fatalf("Configure after Close: %v, %d opens", ds, opens)
	}
	if err := s.Close(func(*int) error { t.Fatal("closed twice"); return nil }); err != nil {
		t.Fatal(err)
	}
}
