package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// crashBatch runs a batch on a fresh store over root whose hook simulates a crash at one
// point, and returns the batch's ops. The "crashed" store is closed, which only releases
// its lock, as the death of its process would.
func crashBatch(t *testing.T, root string, hook func(*faults)) []storage.Op {
	t.Helper()
	ctx := context.Background()
	s := openStore(t, root)
	for _, k := range []string{"doomed", "changed"} {
		if err := s.Put(ctx, "ns", []byte(k), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	long := bytes.Repeat([]byte{0x5a}, 700) // a key with directories
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: []byte("new"), Value: []byte("n")},
		{Kind: storage.OpPut, Key: []byte("changed"), Value: []byte("after")},
		{Kind: storage.OpPut, Key: []byte("empty"), Value: []byte{}},
		{Kind: storage.OpPut, Key: long, Value: []byte("long")},
		{Kind: storage.OpDelete, Key: []byte("doomed")},
	}
	s.faults = &faults{}
	hook(s.faults)
	if err := s.Batch(ctx, "ns", ops); !errors.Is(err, errCrash) {
		t.Fatalf("batch with a simulated crash returned %v, want the crash", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestCrashAfterCommitIsReplayed stops a batch right after its journal is committed and
// checks that the next start applies all of it.
func TestCrashAfterCommitIsReplayed(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	ops := crashBatch(t, root, func(f *faults) { f.afterCommit = func() error { return errCrash } })
	if _, err := os.Stat(filepath.Join(root, journalName)); err != nil {
		t.Fatalf("no committed journal after the simulated crash: %v", err)
	}
	// Apply one op by hand, as a crash in the middle of applying would leave it.
	j := readJournal(t, root)
	if err := os.Rename(filepath.Join(root, j.Ops[0].Temp), filepath.Join(root, j.Ops[0].Target)); err != nil {
		t.Fatal(err)
	}

	s := openStore(t, root)
	for _, op := range ops {
		v, ok, err := s.Get(ctx, "ns", op.Key)
		switch {
		case err != nil:
			t.Fatal(err)
		case op.Kind == storage.OpDelete && ok:
			t.Errorf("deleted key %q is still present after replay", op.Key)
		case op.Kind == storage.OpPut && (!ok || !bytes.Equal(v, op.Value)):
			t.Errorf("key %.20q = %q, %v after replay; want %q", op.Key, v, ok, op.Value)
		}
	}
	if _, err := os.Stat(filepath.Join(root, journalName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal still present after replay: %v", err)
	}
	assertTmpEmpty(t, root)
}

// TestCrashBeforeCommitIsDiscarded stops a batch after its values and uncommitted journal
// are written: the next start shows none of it and removes the temporary files.
func TestCrashBeforeCommitIsDiscarded(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	ops := crashBatch(t, root, func(f *faults) { f.beforeCommit = func() error { return errCrash } })
	if names, _ := readNames(filepath.Join(root, tmpDirName)); len(names) < len(ops) {
		t.Fatalf("tmp/ holds %v after the simulated crash, want the batch's values and journal", names)
	}
	s := openStore(t, root)
	want := map[string]string{"doomed": "before", "changed": "before"}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Items {
		got[string(kv.Key)] = string(kv.Value)
	}
	if len(got) != len(want) || got["doomed"] != "before" || got["changed"] != "before" {
		t.Errorf("after a crash before commit the namespace holds %q, want %q", got, want)
	}
	assertTmpEmpty(t, root)
}

// TestReplayIsIdempotent applies the same committed journal twice, as a crash during
// replay would make the next start do.
func TestReplayIsIdempotent(t *testing.T) {
	root := t.TempDir()
	crashBatch(t, root, func(f *faults) { f.afterCommit = func() error { return errCrash } })
	j := readJournal(t, root)
	s := openStore(t, root) // replays
	if err := s.applyJournal(j); err != nil {
		t.Fatalf("second replay: %v", err)
	}
	v, ok, err := s.Get(context.Background(), "ns", []byte("changed"))
	if err != nil || !ok || string(v) != "after" {
		t.Errorf("changed = %q, %v, %v after two replays; want after", v, ok, err)
	}
}

// TestBadJournalIsKept refuses to start over a journal it cannot trust, and keeps it.
func TestBadJournalIsKept(t *testing.T) {
	tests := []struct {
		name, journal, wantErr string
	}{
		{"garbage", "{not json", "unreadable"},
		{"future version", `{"version": 99, "ops": []}`, "version 99"},
		{"escaping target", `{"version": 1, "ops": [{"op": "delete", "target": "../../etc/passwd"}]}`, "not a key file"},
		{"escaping temp", `{"version": 1, "ops": [{"op": "put", "target": "ns/x/y.v", "temp": "ns/x/z.v"}]}`, "not in tmp/"},
		{"unknown op", `{"version": 1, "ops": [{"op": "chmod", "target": "ns/x/y.v"}]}`, "unknown op"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, journalName)
			if err := os.WriteFile(path, []byte(tt.journal), 0o600); err != nil {
				t.Fatal(err)
			}
			s := newQuietStore()
			defer s.Close()
			err := s.Configure(context.Background(), base.ConfigureRequest{Config: rootConfig(root)}).Err()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "journal") {
				t.Errorf("configure over a bad journal: %v, want an error about the journal containing %q", err, tt.wantErr)
			}
			if b, _ := os.ReadFile(path); string(b) != tt.journal {
				t.Errorf("journal changed to %q", b)
			}
			// The failed start released the root.
			if err := probeLock(root); err != nil {
				t.Errorf("root still locked after a failed configure: %v", err)
			}
		})
	}
}

func readJournal(t *testing.T, root string) journal {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, journalName))
	if err != nil {
		t.Fatal(err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j
}
