package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// The benchmarks run the real plugin binary, as the host does (go-plugin, AutoMTLS, the
// runner client), and print ratios measured in the same run: timings on a shared machine
// are noisy, ratios much less so. `make bench-python` runs them all.

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkPrint compares print(1) through the plugin (an output event and the result, over
// the runner's fast path, and over a gRPC Execute stream in a second session) with spawning
// /usr/bin/python3 -c 'print(1)', interleaved. It also prints the floor of a gRPC call
// across the plugin boundary: a bare unary call (Info).
//
//	go test -run '^$' -bench Print -benchtime 2000x ./plugins/runner-python
func BenchmarkPrint(b *testing.B) {
	s := open(b, nil, nil)
	g := openOn(b, launchWith(b, nil, runner.PluginSetGRPCOnly()), nil)
	if s.r.Transport() != "unix" || g.r.Transport() != "grpc" {
		b.Fatalf("transports %s and %s, want unix and grpc", s.r.Transport(), g.r.Transport())
	}
	ctx := context.Background()
	emit := func(runner.Event) error { return nil }
	exec1 := func(r *runner.Client) time.Duration {
		t0 := time.Now()
		res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "b", Input: "print(1)"}, emit)
		if err != nil || res.Status != runner.StatusOK {
			b.Fatal(err, res)
		}
		return time.Since(t0)
	}
	var viaPlugin, viaGRPC, spawn, floor []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		viaPlugin = append(viaPlugin, exec1(s.r))
		viaGRPC = append(viaGRPC, exec1(g.r))
		t0 := time.Now()
		if _, err := s.r.Info(ctx); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, time.Since(t0))
		if i%4 == 0 { // a spawn costs ~50 plugin executions: sample it
			t0 = time.Now()
			if out, err := exec.Command("/usr/bin/python3", "-c", "print(1)").Output(); err != nil || string(out) != "1\n" {
				b.Fatal(err)
			}
			spawn = append(spawn, time.Since(t0))
		}
	}
	b.StopTimer()
	pp, pg, ps, pf := p50(viaPlugin), p50(viaGRPC), p50(spawn), p50(floor)
	b.ReportMetric(ms(pp), "plugin-p50-ms")
	b.ReportMetric(ms(pg), "plugin-grpc-p50-ms")
	b.ReportMetric(ms(ps), "spawn-p50-ms")
	b.ReportMetric(float64(pp)/float64(ps), "plugin/spawn")
	b.ReportMetric(ms(pf), "grpc-floor-p50-ms")
	b.Logf("print(1): plugin p50 %.3f ms over its fast path, %.3f ms over gRPC; spawn /usr/bin/python3 p50 %.2f ms, ratio %.3f; bare gRPC call p50 %.3f ms (n=%d)",
		ms(pp), ms(pg), ms(ps), float64(pp)/float64(ps), ms(pf), b.N)
}

// BenchmarkPrintAfterIdle measures print(1) through the plugin back to back and after 3 ms
// of idleness before each (about what the rest of an API request takes), alternating
// blocks of 500: the difference is what waking the idle processes (the plugin, the
// sandboxed worker) costs on this machine.
//
//	go test -run '^$' -bench PrintAfterIdle -benchtime 1x ./plugins/runner-python
func BenchmarkPrintAfterIdle(b *testing.B) {
	s := open(b, nil, nil)
	ctx := context.Background()
	emit := func(runner.Event) error { return nil }
	var busy, idle []time.Duration
	for range b.N {
		for round := range 4 {
			for range 500 {
				if round%2 == 1 {
					time.Sleep(3 * time.Millisecond)
				}
				t0 := time.Now()
				if _, err := s.r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "b", Input: "print(1)"}, emit); err != nil {
					b.Fatal(err)
				}
				if round%2 == 1 {
					idle = append(idle, time.Since(t0))
				} else {
					busy = append(busy, time.Since(t0))
				}
			}
		}
	}
	b.ReportMetric(ms(p50(busy)), "back-to-back-p50-ms")
	b.ReportMetric(ms(p50(idle)), "after-idle-p50-ms")
	b.Logf("print(1) through the plugin: back to back p50 %.3f ms, after 3 ms idle p50 %.3f ms (n=%d each)",
		ms(p50(busy)), ms(p50(idle)), len(busy))
}

// BenchmarkPrintInProcess runs print(1) on a runner inside the test process: the plugin's
// own cost without gRPC.
func BenchmarkPrintInProcess(b *testing.B) {
	r := newRunner(nil)
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{}`)}); ds.HasErrors() {
		b.Fatal(ds.Err())
	}
	if err := r.OpenSession(context.Background(), runner.Session{ID: "bench", WorkDir: newWorkDir(b)}); err != nil {
		b.Fatal(err)
	}
	defer r.CloseSession(context.Background())
	emit := func(runner.Event) error { return nil }
	var d []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := r.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "b", Input: "print(1)"}, emit)
		d = append(d, time.Since(t0))
		if err != nil || res.Status != runner.StatusOK {
			b.Fatal(err, res)
		}
	}
	b.ReportMetric(ms(p50(d)), "p50-ms")
	b.Logf("print(1) in process (no gRPC): p50 %.3f ms (n=%d)", ms(p50(d)), b.N)
}

// BenchmarkColdStart measures a session's cold start as the host sees it: start the plugin
// process (go-plugin handshake with AutoMTLS), configure it, open the session (sandbox and
// worker) and run the first print(1). Each phase's p50 is printed.
//
//	go test -run '^$' -bench ColdStart -benchtime 30x ./plugins/runner-python
func BenchmarkColdStart(b *testing.B) {
	bin := pluginBinary(b)
	ctx := context.Background()
	var launchD, configD, openD, firstD, total, spawn []time.Duration
	emit := func(runner.Event) error { return nil }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		wd := newWorkDir(b)
		b.StartTimer()
		t0 := time.Now()
		pc, _ := base.NewClientCmd(base.LaunchConfig{Path: bin, Kind: base.KindRunner, Plugins: runner.PluginSet()})
		raw, err := base.Dispense(ctx, pc, base.KindRunner)
		if err != nil {
			b.Fatal(err)
		}
		r := raw.(*runner.Client)
		t1 := time.Now()
		if ds := r.Configure(ctx, base.ConfigureRequest{Config: []byte(`{}`)}); ds.HasErrors() {
			b.Fatal(ds.Err())
		}
		t2 := time.Now()
		if err := r.OpenSession(ctx, runner.Session{ID: fmt.Sprintf("cold-%d", i), WorkDir: wd}); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "first", Input: "print(1)"}, emit)
		if err != nil || res.Status != runner.StatusOK {
			b.Fatal(err, res)
		}
		t4 := time.Now()
		launchD, configD, openD, firstD, total = append(launchD, t1.Sub(t0)), append(configD, t2.Sub(t1)),
			append(openD, t3.Sub(t2)), append(firstD, t4.Sub(t3)), append(total, t4.Sub(t0))
		b.StopTimer()
		_ = r.CloseSession(ctx)
		pc.Kill()
		t0 = time.Now()
		if err := exec.Command("/usr/bin/python3", "-c", "print(1)").Run(); err != nil {
			b.Fatal(err)
		}
		spawn = append(spawn, time.Since(t0))
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(ms(p50(total)), "cold-start-p50-ms")
	b.ReportMetric(ms(p50(openD)), "open-session-p50-ms")
	b.ReportMetric(float64(p50(openD))/float64(p50(spawn)), "open/spawn")
	b.Logf("session cold start p50 %.1f ms = plugin launch %.1f + configure %.1f + open session (sandbox, worker) %.1f + first print(1) %.1f (p50 each, n=%d); in the same run /usr/bin/python3 -c 'print(1)' p50 %.1f ms, open session / spawn %.2f",
		ms(p50(total)), ms(p50(launchD)), ms(p50(configD)), ms(p50(openD)), ms(p50(firstD)), b.N, ms(p50(spawn)), float64(p50(openD))/float64(p50(spawn)))
}

// BenchmarkMemory50Sessions opens 50 sessions at once, each a plugin process holding a
// worker, and reports the memory of the host side (this process) and of each session's
// processes: the plugin, the sandbox's init and the Python worker. RSS counts shared pages
// in full for each process; PSS shares them out, so the PSS figures add up.
//
//	go test -run '^$' -bench Memory50 -benchtime 1x ./plugins/runner-python
func BenchmarkMemory50Sessions(b *testing.B) {
	const n = 50
	for i := 0; i < b.N; i++ {
		hostBefore := memOf(os.Getpid())
		sessions := make([]*testSession, n)
		for j := range sessions {
			sessions[j] = open(b, nil, nil)
			sessions[j].mustRun("x = 1")
		}
		hostAfter := memOf(os.Getpid())
		var plugin, initP, py memFigures
		for _, s := range sessions {
			plugin = plugin.add(memOf(s.pid()))
			kids := children(s.pid())
			if len(kids) != 1 {
				b.Fatalf("plugin %d has children %v, want its sandbox's init", s.pid(), kids)
			}
			initP = initP.add(memOf(kids[0]))
			w := children(kids[0])
			if len(w) != 1 {
				b.Fatalf("init %d has children %v", kids[0], w)
			}
			py = py.add(memOf(w[0]))
		}
		per := plugin.add(initP).add(py)
		b.ReportMetric(float64(hostAfter.rss-hostBefore.rss)/n/1024, "host-KiB/session")
		b.ReportMetric(float64(per.pss)/n/1024, "session-PSS-KiB")
		b.Logf("%d sessions: host process RSS %.1f MiB (+%.1f MiB, %.0f KiB per session)", n,
			mib(hostAfter.rss), mib(hostAfter.rss-hostBefore.rss), float64(hostAfter.rss-hostBefore.rss)/n/1024)
		b.Logf("per session, mean RSS / PSS: plugin %.1f / %.1f MiB, init %.1f / %.1f MiB, python worker %.1f / %.1f MiB; total PSS %.1f MiB per session, %.0f MiB for all %d",
			mib(plugin.rss)/n, mib(plugin.pss)/n, mib(initP.rss)/n, mib(initP.pss)/n, mib(py.rss)/n, mib(py.pss)/n,
			mib(per.pss)/n, mib(per.pss), n)
		for _, s := range sessions {
			_ = s.r.CloseSession(context.Background())
			s.pc.Kill()
		}
	}
}

type memFigures struct{ rss, pss uint64 }

func (m memFigures) add(o memFigures) memFigures { return memFigures{m.rss + o.rss, m.pss + o.pss} }

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// memOf reads a process's RSS and PSS from /proc/<pid>/smaps_rollup.
func memOf(pid int) memFigures {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memFigures{}
	}
	var m memFigures
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			m.rss = v * 1024
		case "Pss:":
			m.pss = v * 1024
		}
	}
	return m
}

// BenchmarkOpenSessionSteps opens sessions in this process (no plugin start, no gRPC) and
// prints the p50 of each step: the sandbox (uid lease, work dir owner, cgroups) and the
// worker's start (spawn init in its namespaces, send it its config, init's setup up to
// the interpreter's exec, the checks from outside, the rest of the interpreter's start),
// then the first print(1), with the worker compiled ahead (as in a pooled process); and,
// interleaved in alternating order, the same with the worker passed as source. init is
// this test binary re-executed, a little larger than the plugin binary.
//
//	go test -run '^$' -bench OpenSessionSteps -benchtime 30x ./plugins/runner-python
func BenchmarkOpenSessionSteps(b *testing.B) {
	set, ds := parseConfig(base.ConfigureRequest{Config: []byte(`{}`)}, false)
	if ds.HasErrors() {
		b.Fatal(ds.Err())
	}
	ctx := context.Background()
	compiled, err := precompileWorker(ctx, set.interpreter)
	if err != nil {
		b.Fatal(err)
	}
	emit := func(runner.Event) error { return nil }
	// open opens a session, runs print(1), closes it; it returns the sandbox's, the
	// first execution's and the whole time, and the worker's steps.
	open := func(id, code string) (sandbox, first, total time.Duration, steps startTiming) {
		wd := newWorkDir(b)
		r := newRunner(nil)
		r.set = &set
		t0 := time.Now()
		sb, err := newSandbox(set, runner.Session{ID: id, WorkDir: wd}, nil)
		if err != nil {
			b.Fatal(err)
		}
		sb.compiled = code
		t1 := time.Now()
		w, err := startWorker(ctx, sb, hclog.NewNullLogger())
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		r.sb, r.w = sb, w
		res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "first", Input: "print(1)"}, emit)
		if err != nil || res.Status != runner.StatusOK {
			b.Fatal(err, res)
		}
		t3 := time.Now()
		_ = r.shutdown(true)
		return t1.Sub(t0), t3.Sub(t2), t3.Sub(t0), w.timing
	}
	var sbD, spawnD, configD, setupD, verifyD, readyD, firstD, total, pyD, srcReady, srcTotal []time.Duration
	for i := 0; i < b.N; i++ {
		for j := 0; j < 2; j++ {
			if (i+j)%2 == 0 {
				_, _, tot, st := open(fmt.Sprintf("steps-src-%d", i), "")
				srcReady, srcTotal = append(srcReady, st.Ready), append(srcTotal, tot)
				continue
			}
			sbx, first, tot, st := open(fmt.Sprintf("steps-%d", i), compiled)
			sbD, firstD, total = append(sbD, sbx), append(firstD, first), append(total, tot)
			spawnD, configD, setupD = append(spawnD, st.Spawn), append(configD, st.Config), append(setupD, st.Setup)
			verifyD, readyD = append(verifyD, st.Verify), append(readyD, st.Ready)
		}
		t0 := time.Now()
		if err := exec.Command(set.interpreter, "-s", "-c", "pass").Run(); err != nil {
			b.Fatal(err)
		}
		pyD = append(pyD, time.Since(t0))
	}
	b.ReportMetric(ms(p50(total)), "open+first-p50-ms")
	b.ReportMetric(ms(p50(srcTotal)), "source-open+first-p50-ms")
	b.Logf("open session + first print(1) p50 %.1f ms = sandbox %.1f + worker [spawn init %.1f + send its config %.1f + init setup %.1f + checks from outside %.1f + interpreter ready %.1f] + first print(1) %.1f (p50 each, n=%d); with the worker as source: ready %.1f, all %.1f; in the same run %s -s -c pass p50 %.1f ms",
		ms(p50(total)), ms(p50(sbD)), ms(p50(spawnD)), ms(p50(configD)), ms(p50(setupD)), ms(p50(verifyD)), ms(p50(readyD)), ms(p50(firstD)), b.N,
		ms(p50(srcReady)), ms(p50(srcTotal)), set.interpreter, ms(p50(pyD)))
}
