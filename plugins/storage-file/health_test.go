package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// TestHealthAfterFullDisk: a write refused for a full disk makes the backend report
// itself unhealthy, with the reason, so the host refuses executions before they run; once
// there is room again (the probe of Health can write), it is healthy again.
func TestHealthAfterFullDisk(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	if h := s.Health(ctx); !h.OK {
		t.Fatalf("fresh store: %+v", h)
	}
	s.faults = &faults{write: func(f *os.File, b []byte) (int, error) {
		return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}}
	checkNoSpace(t, "put", s.Put(ctx, "ns", []byte("k"), []byte("v")))
	if h := s.Health(ctx); h.OK || !strings.Contains(h.Detail, "full") {
		t.Errorf("after a write failed for a full disk: %+v", h)
	}
	if h := s.Health(ctx); h.OK { // the probe fails too while the disk is full
		t.Errorf("still full: %+v", h)
	}
	s.faults = nil
	if h := s.Health(ctx); !h.OK || h.Detail != "" {
		t.Errorf("room again: %+v", h)
	}
	// A write that succeeds clears it as well.
	s.faults = &faults{write: func(f *os.File, b []byte) (int, error) {
		return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}}
	checkNoSpace(t, "batch", s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("a"), Value: []byte("1")}, {Kind: storage.OpPut, Key: []byte("b"), Value: []byte("2")}}))
	s.faults = nil
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(ctx); !h.OK {
		t.Errorf("after a write succeeded: %+v", h)
	}
}

// TestNoSyncWarns: no_sync is logged at WARN when the store opens, and every health
// answer says so; without it, neither.
func TestNoSyncWarns(t *testing.T) {
	for _, noSync := range []bool{true, false} {
		var logs syncbuf.Buffer
		s := newQuietStore()
		s.logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
		raw, _ := json.Marshal(map[string]any{"root": t.TempDir(), "no_sync": noSync})
		if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw}); ds.HasErrors() {
			t.Fatal(ds.Err())
		}
		h := s.Health(context.Background())
		warned := strings.Contains(logs.String(), "[WARN]") && strings.Contains(logs.String(), "no_sync")
		if !h.OK || warned != noSync || strings.Contains(h.Detail, "no_sync") != noSync || (h.Metrics["no_sync"] == 1) != noSync {
			t.Errorf("no_sync %v: health %+v, log:\n%s", noSync, h, logs.String())
		}
		s.Close()
	}
}
