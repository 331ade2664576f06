package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// launchPlugin starts this test binary as the plugin, configured on root, and stops it
// when the test ends. It returns the client and the stop function (safe to call twice).
func launchPlugin(t testing.TB, root string) (storage.Storage, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, stop, err := sdktest.LaunchStorage(ctx, os.Args[0], []string{servePluginEnv + "=1"}, rootConfig(root), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopOnce := func() { once.Do(stop) }
	t.Cleanup(stopOnce)
	return s, stopOnce
}

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunStorage(t, openStore(t, t.TempDir()))
}

func TestConformanceThroughPlugin(t *testing.T) {
	s, _ := launchPlugin(t, t.TempDir())
	sdktest.RunStorage(t, s)
}

// TestPluginDefaultsToDataDir launches the plugin without a root: it keeps its data in
// "files" under the data directory the host gives it.
func TestPluginDefaultsToDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	s, stop, err := sdktest.LaunchStorage(ctx, os.Args[0], []string{servePluginEnv + "=1"}, nil, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := s.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "files", nsRel("ns"), keyRel([]byte("k")))); err != nil {
		t.Errorf("value not under <data dir>/files: %v", err)
	}
}

// TestPluginSecondProcessIsRefused starts a second plugin process on a root in use: its
// Configure fails and names the first process.
func TestPluginSecondProcessIsRefused(t *testing.T) {
	root := t.TempDir()
	launchPlugin(t, root)
	pid := lockHolder(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := sdktest.LaunchStorage(ctx, os.Args[0], []string{servePluginEnv + "=1"}, rootConfig(root), t.TempDir())
	want := fmt.Sprintf("is in use by another process (pid %d)", pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second plugin on the same root: %v, want an error containing %q", err, want)
	}
}

// TestKill9KeepsAcknowledgedWrites kills the plugin process with SIGKILL while writers
// put keys and batches, restarts it on the same root, and checks that every write that
// was acknowledged is there, intact, and that every batch is there entirely or not at all.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	root := t.TempDir()
	s, stop := launchPlugin(t, root)
	pid := lockHolder(t, root)
	if pid == os.Getpid() {
		t.Fatal("the lock is held by the test process, not the plugin")
	}
	ctx := context.Background()
	value := func(key string) []byte { return bytes.Repeat([]byte(key+";"), 200) }

	var (
		mu      sync.Mutex
		acked   []string   // keys of acknowledged puts
		batches [][]string // keys of every batch attempted, acknowledged or not
		ackedB  []int      // indexes in batches of acknowledged batches
		wg      sync.WaitGroup
	)
	const writers = 4
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("put-%d-%06d", w, i)
				if i%5 == 0 {
					k += strings.Repeat("-long", 60) // a key with directories
				}
				if err := s.Put(ctx, "ns", []byte(k), value(k)); err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			var keys []string
			var ops []storage.Op
			for j := range 8 {
				k := fmt.Sprintf("batch-%06d-%d", i, j)
				keys = append(keys, k)
				ops = append(ops, storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: value(k)})
			}
			mu.Lock()
			batches = append(batches, keys)
			mu.Unlock()
			if err := s.Batch(ctx, "ns", ops); err != nil {
				return
			}
			mu.Lock()
			ackedB = append(ackedB, i)
			mu.Unlock()
		}
	})
	// Let writes accumulate, then kill the plugin in the middle of them.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n, nb := len(acked), len(ackedB)
		mu.Unlock()
		if n >= 200 && nb >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	stop()
	t.Logf("killed the plugin after %d acknowledged puts and %d acknowledged batches", len(acked), len(ackedB))
	if len(acked) == 0 || len(ackedB) == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}

	s2, _ := launchPlugin(t, root)
	for _, k := range acked {
		v, ok, err := s2.Get(ctx, "ns", []byte(k))
		if err != nil || !ok || !bytes.Equal(v, value(k)) {
			t.Errorf("acknowledged put %.30q after restart: found=%v err=%v intact=%v", k, ok, err, bytes.Equal(v, value(k)))
		}
	}
	ackedSet := map[int]bool{}
	for _, i := range ackedB {
		ackedSet[i] = true
	}
	for i, keys := range batches {
		present := 0
		for _, k := range keys {
			v, ok, err := s2.Get(ctx, "ns", []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				present++
				if !bytes.Equal(v, value(k)) {
					t.Errorf("batch %d key %q has a corrupt value", i, k)
				}
			}
		}
		switch {
		case ackedSet[i] && present != len(keys):
			t.Errorf("acknowledged batch %d has %d of its %d keys after restart", i, present, len(keys))
		case present != 0 && present != len(keys):
			t.Errorf("batch %d is half there: %d of %d keys", i, present, len(keys))
		}
	}
	if _, err := os.Stat(filepath.Join(root, journalName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left after restart: %v", err)
	}
	assertTmpEmpty(t, root)
}

// lockHolder returns the pid written in root's lock file.
func lockHolder(t *testing.T, root string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, lockName))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("lock file holds %q, want a pid", b)
	}
	return pid
}
