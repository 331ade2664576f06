package latency

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// echoEnv makes the test binary an echo server on the Unix socket it names: the other
// process of BenchmarkWakeAfterIdle.
const echoEnv = "LIMIT_LATENCY_ECHO"

func TestMain(m *testing.M) {
	if path := os.Getenv(echoEnv); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Exit(1)
		}
		b := make([]byte, 64)
		for {
			n, err := c.Read(b)
			if err != nil {
				os.Exit(0)
			}
			if _, err := c.Write(b[:n]); err != nil {
				os.Exit(0)
			}
		}
	}
	os.Exit(m.Run())
}

// BenchmarkWakeAfterIdle measures what waking an idle process costs on this machine: a
// small message's round trip to another process over a Unix socket, back to back and
// after this process slept (so both processes, and their CPUs, went idle) for 1 and 3 ms.
// Every request through limitd crosses several such hand-offs (client, limitd, runner
// plugin, sandboxed worker, storage plugin), each after the idleness of the phase before.
//
//	go test -run '^$' -bench WakeAfterIdle -benchtime 1x ./internal/latency
func BenchmarkWakeAfterIdle(b *testing.B) {
	dir := b.TempDir()
	sock := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), echoEnv+"="+sock)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	trip := func() time.Duration {
		t := time.Now()
		if _, err := c.Write(buf[:8]); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	const n = 2000
	for i := 0; i < b.N; i++ {
		line := ""
		var base time.Duration
		for _, idle := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond} {
			var h Histogram
			for j := 0; j < n; j++ {
				if idle > 0 {
					time.Sleep(idle)
				}
				h.Record(trip())
			}
			p50 := h.Quantile(0.5)
			if idle == 0 {
				base = p50
				line += fmt.Sprintf("back to back p50 %v", p50.Round(100*time.Nanosecond))
			} else {
				line += fmt.Sprintf("; after %v idle p50 %v (%.1f×)", idle, p50.Round(100*time.Nanosecond), float64(p50)/float64(base))
			}
			b.ReportMetric(float64(p50.Microseconds()), fmt.Sprintf("idle%v-p50-µs", idle))
		}
		fmt.Println("round trip to another process over a Unix socket, n=2000 each:", line)
	}
}
