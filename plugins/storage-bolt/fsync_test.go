package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fsyncWorkloadEnv makes TestFsyncWorkload write instead of skipping: its value is the
// number of concurrent writers.
const fsyncWorkloadEnv = "LIMIT_BOLT_FSYNC_WORKLOAD"

// fsyncPuts is how many puts the workload makes in all, whatever the number of writers.
const fsyncPuts = 320

// TestFsyncWorkload is the process TestGroupCommitFsyncs traces: it makes fsyncPuts
// durable puts spread over the writers its environment names, and prints the commits.
func TestFsyncWorkload(t *testing.T) {
	writers, err := strconv.Atoi(os.Getenv(fsyncWorkloadEnv))
	if err != nil {
		t.Skip("run by TestGroupCommitFsyncs")
	}
	s := openStore(t, nil)
	e, err := s.engine()
	if err != nil {
		t.Fatal(err)
	}
	before := e.Commits()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range fsyncPuts / writers {
				if err := s.Put(context.Background(), "ns", fmt.Appendf(nil, "w%d/%d", w, i), []byte("value")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("commits=%d\n", e.Commits()-before)
}

// TestGroupCommitFsyncs counts the fsync and fdatasync system calls of the same number of
// durable puts made by 1 writer and by 16 concurrent writers (with strace): group commit
// must make the 16 writers share them.
func TestGroupCommitFsyncs(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed: cannot count fsyncs")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(writers int) (fsyncs, commits int) {
		out := filepath.Join(t.TempDir(), "strace.txt")
		cmd := exec.Command(strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out,
			exe, "-test.run", "^TestFsyncWorkload$", "-test.count", "1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", fsyncWorkloadEnv, writers))
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("traced workload with %d writers: %v\n%s", writers, err, stdout)
		}
		for line := range strings.Lines(string(stdout)) {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "commits="); ok {
				commits, _ = strconv.Atoi(n)
			}
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 5 && (fields[len(fields)-1] == "fsync" || fields[len(fields)-1] == "fdatasync") {
				n, err := strconv.Atoi(fields[3])
				if err != nil {
					t.Fatalf("strace summary line %q: %v", sc.Text(), err)
				}
				fsyncs += n
			}
		}
		if commits == 0 || fsyncs == 0 {
			t.Fatalf("workload with %d writers: %d commits, %d fsyncs; the trace or the workload did not run", writers, commits, fsyncs)
		}
		return fsyncs, commits
	}
	f1, c1 := run(1)
	f16, c16 := run(16)
	t.Logf("%d durable puts: 1 writer %d commits, %d fsyncs; 16 writers %d commits, %d fsyncs (%.2f fsyncs per put)",
		fsyncPuts, c1, f1, c16, f16, float64(f16)/fsyncPuts)
	if c1 != fsyncPuts {
		t.Errorf("1 writer: %d commits for %d puts, want one each", c1, fsyncPuts)
	}
	if f16*4 > f1 {
		t.Errorf("16 writers made %d fsyncs against %d for one writer: want at most a quarter, group commit is not grouping", f16, f1)
	}
}
