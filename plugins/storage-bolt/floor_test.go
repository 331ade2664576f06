package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// floorEnv makes the test binary serve BenchmarkWriteFloor's other process instead of
// running tests: its value is "DB-PATH SOCKET-PATH".
const floorEnv = "LIMIT_TEST_BOLT_FLOOR"

// Shape of the floor benchmark's writes, those of sdktest's PutParallel16.
const (
	floorWriters = 16
	floorKeys    = 1000
	floorNS      = "floor"
)

var floorValue = []byte(strings.Repeat("v", 100))

// floorKey is key i of writer w, as sdktest's benchmarks name it.
func floorKey(w, i int) []byte { return fmt.Appendf(nil, "bench/w%02d/k%05d", w, i%floorKeys) }

// floorFrame encodes one round: every writer's next put, as length-prefixed keys and values
// behind the frame's own length.
func floorFrame(round int) []byte {
	f := make([]byte, 4, 4+floorWriters*128)
	for w := range floorWriters {
		k := floorKey(w, round)
		f = binary.LittleEndian.AppendUint16(f, uint16(len(k)))
		f = append(f, k...)
		f = binary.LittleEndian.AppendUint32(f, uint32(len(floorValue)))
		f = append(f, floorValue...)
	}
	binary.LittleEndian.PutUint32(f, uint32(len(f)-4))
	return f
}

// serveFloor is the other process of BenchmarkWriteFloor: the bolt store, opened as the
// plugin opens it, fed by the cheapest exchange there is. It accepts one connection on a
// Unix socket and, for each frame, commits its puts as one durable Batch and answers one
// byte (0 committed, 1 failed), until the connection closes.
func serveFloor(arg string) {
	dbPath, sock, ok := strings.Cut(arg, " ")
	if !ok {
		floorFail(fmt.Errorf("%s=%q: want \"DB-PATH SOCKET-PATH\"", floorEnv, arg))
	}
	s := newStore()
	raw, _ := json.Marshal(map[string]any{"path": dbPath, "no_sync": false})
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw}); ds.HasErrors() {
		floorFail(ds.Err())
	}
	defer s.Close()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		floorFail(err)
	}
	c, err := ln.Accept()
	if err != nil {
		floorFail(err)
	}
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [4]byte
	buf := make([]byte, 0, 64<<10)
	ops := make([]storage.Op, 0, floorWriters)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return // the benchmark closed the connection
		}
		buf = buf[:binary.LittleEndian.Uint32(hdr[:])]
		if _, err := io.ReadFull(r, buf); err != nil {
			floorFail(err)
		}
		ops = ops[:0]
		for p := buf; len(p) > 0; {
			kl := int(binary.LittleEndian.Uint16(p))
			k := p[2 : 2+kl]
			p = p[2+kl:]
			vl := int(binary.LittleEndian.Uint32(p))
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: p[4 : 4+vl]})
			p = p[4+vl:]
		}
		ack := []byte{0}
		if err := s.Batch(context.Background(), floorNS, ops); err != nil {
			fmt.Fprintln(os.Stderr, "floor batch:", err)
			ack[0] = 1
		}
		if _, err := c.Write(ack); err != nil {
			floorFail(err)
		}
	}
}

func floorFail(err error) {
	fmt.Fprintln(os.Stderr, "floor process:", err)
	os.Exit(2)
}

// floorPhase is one measured stretch of a side: writes done and wall time taken.
type floorPhase struct {
	writes  int
	elapsed time.Duration
}

func (p *floorPhase) add(writes int, d time.Duration) { p.writes += writes; p.elapsed += d }

func (p floorPhase) rate() float64 { return float64(p.writes) / p.elapsed.Seconds() }

// BenchmarkWriteFloor asks what issue 2's write target (16 concurrent durable writers
// through the plugin at ≥ 0.8× in-process) allows on this machine. It measures, in one
// run, b.N writes a side, interleaved in four stretches:
//
//   - inproc: 16 writers putting into the bolt store in-process (the target's reference);
//   - inproc batch: one caller committing the 16 writes of a round as one Batch, in-process;
//   - floor: the same Batch of 16, committed by the same store in another process, which is
//     sent each round as one frame on a raw Unix socket and answers one byte: no gRPC, no
//     TLS, no protobuf, no merging of callers, no goroutine hand-offs on either side. It is
//     what the best plugin protocol could reach, since every durable write must still be
//     acknowledged by the process that made it durable;
//   - plugin batch: the same Batch of 16 a round through the real plugin (the SDK's client,
//     fast path and server), one caller;
//   - plugin: 16 writers through the real plugin (fast path, merged writes), as
//     BenchmarkBoltPlugin's PutParallel16/unix.
//
// It prints writes per second and each side's ratio to inproc.
//
//	go test -run '^$' -bench WriteFloor -benchtime 4000x ./plugins/storage-bolt
func BenchmarkWriteFloor(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	inProc := openStore(b, map[string]any{"path": filepath.Join(dir, "inproc.db"), "no_sync": false})
	inBatch := openStore(b, map[string]any{"path": filepath.Join(dir, "inbatch.db"), "no_sync": false})
	viaPlugin := launchPlugin(b, filepath.Join(dir, "plugin.db"))

	sock := filepath.Join(dir, "floor.sock")
	cmd := exec.Command(testBinary(b))
	cmd.Env = []string{floorEnv + "=" + filepath.Join(dir, "floor.db") + " " + sock}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var conn net.Conn
	for i := 0; conn == nil; i++ {
		c, err := net.Dial("unix", sock)
		switch {
		case err == nil:
			conn = c
		case i > 500:
			_ = cmd.Process.Kill()
			b.Fatalf("floor process did not listen on %s: %v", sock, err)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer func() { conn.Close(); _ = cmd.Wait() }()

	rounds := max(b.N/floorWriters, 1)
	frames := make([][]byte, floorKeys)
	batches := make([][]storage.Op, floorKeys)
	for r := range floorKeys {
		frames[r] = floorFrame(r)
		for w := range floorWriters {
			batches[r] = append(batches[r], storage.Op{Kind: storage.OpPut, Key: floorKey(w, r), Value: floorValue})
		}
	}
	writers := func(s storage.Storage, n int) error {
		var (
			next  atomic.Int64
			wg    sync.WaitGroup
			first atomic.Pointer[error]
		)
		for w := range floorWriters {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n || first.Load() != nil {
						return
					}
					if err := s.Put(ctx, floorNS, floorKey(w, i/floorWriters), floorValue); err != nil {
						first.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
		wg.Wait()
		if p := first.Load(); p != nil {
			return *p
		}
		return nil
	}
	ack := make([]byte, 1)
	sides := []struct {
		name string
		run  func(n int) error
	}{
		{"inproc (16 writers)", func(n int) error { return writers(inProc, n*floorWriters) }},
		{"inproc batch (one Batch of 16 a round)", func(n int) error {
			for r := range n {
				if err := inBatch.Batch(ctx, floorNS, batches[r%floorKeys]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"floor (the Batch in another process, raw frames)", func(n int) error {
			for r := range n {
				if _, err := conn.Write(frames[r%floorKeys]); err != nil {
					return err
				}
				if _, err := io.ReadFull(conn, ack); err != nil {
					return err
				}
				if ack[0] != 0 {
					return fmt.Errorf("floor process: batch failed (see its stderr)")
				}
			}
			return nil
		}},
		{"plugin batch (one Batch of 16 a round, fast path)", func(n int) error {
			for r := range n {
				if err := viaPlugin.Batch(ctx, floorNS, batches[r%floorKeys]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"plugin (16 writers, fast path, merged)", func(n int) error { return writers(viaPlugin, n*floorWriters) }},
	}
	phases := make([]floorPhase, len(sides))
	const stretches = 4
	b.ResetTimer()
	for st := range stretches {
		n := rounds / stretches
		if st == stretches-1 {
			n = rounds - n*(stretches-1)
		}
		for i, sd := range sides {
			t0 := time.Now()
			if err := sd.run(n); err != nil {
				b.Fatalf("%s: %v", sd.name, err)
			}
			phases[i].add(n*floorWriters, time.Since(t0))
		}
	}
	b.StopTimer()
	var out strings.Builder
	ref := phases[0].rate()
	fmt.Fprintf(&out, "\nDurable writes of 100 bytes, %d rounds of %d writes a side, in %d interleaved stretches:\n", rounds, floorWriters, stretches)
	for i, sd := range sides {
		fmt.Fprintf(&out, "  %-50s %8.0f writes/s  %.2fx inproc\n", sd.name, phases[i].rate(), phases[i].rate()/ref)
	}
	if calls, batches := viaPlugin.(interface{ MergeStats() (int64, int64) }).MergeStats(); batches > 0 {
		fmt.Fprintf(&out, "  plugin merged %d writes into %d batches, %.1f a batch\n", calls, batches, float64(calls)/float64(batches))
	}
	fmt.Fprint(os.Stdout, out.String())
	b.ReportMetric(phases[2].rate()/ref, "floor/inproc")
	b.ReportMetric(phases[4].rate()/ref, "plugin/inproc")
}
