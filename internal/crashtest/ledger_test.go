package crashtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

func TestValueRoundTrip(t *testing.T) {
	for _, r := range []record{
		{Key: "r00001/g00/p000001"},
		{Key: "r00001/g00/b000002/0", Batch: "r00001/g00/b000002", BatchSize: 3, Victim: "r00001/g00/p000001"},
		{Key: "r00001/g00/c000000", Version: 42},
	} {
		v := encode(r, bytes.Repeat([]byte{7}, 100))
		got, err := decode(v)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		r.PayloadLen = 100
		if got != r {
			t.Errorf("decode(encode(%+v)) = %+v", r, got)
		}
	}
}

// TestValueDamageDetected flips, cuts and extends values: every change is caught.
func TestValueDamageDetected(t *testing.T) {
	v := encode(record{Key: "k", Batch: "b", BatchSize: 2}, []byte("payload"))
	damaged := map[string][]byte{
		"empty":       {},
		"truncated":   v[:len(v)-1],
		"extended":    append(bytes.Clone(v), 0),
		"flipped bit": func() []byte { d := bytes.Clone(v); d[len(d)/2] ^= 1; return d }(),
		"zeroed":      make([]byte, len(v)),
		"other magic": append([]byte("XXXX"), v[4:]...),
	}
	for name, d := range damaged {
		if _, err := decode(d); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decode returned %v, want errCorrupt", name, err)
		}
	}
}

func TestLedgerApply(t *testing.T) {
	l := NewLedger()
	for _, line := range []string{
		"put r00000/a", "put r00000/b", "batch r00000/x/0,r00000/x/1 r00000/a",
		"intent-del r00000/b", "ver r00000/c 3", "ver r00000/c 2", "writing", "error boom",
	} {
		if err := l.Apply(0, line); err != nil {
			t.Fatal(err)
		}
	}
	rl := l.Rounds[0]
	if !rl.Exist["r00000/b"] || rl.Exist["r00000/a"] || !rl.Deleted["r00000/a"] || !rl.Exist["r00000/x/1"] ||
		!rl.Intent["r00000/b"] || rl.MinVersion["r00000/c"] != 3 || rl.Acks != 5 {
		t.Errorf("ledger after the lines: %+v", rl)
	}
	for _, bad := range []string{"put", "put a b", "ver k x", "batch", "del"} {
		if err := l.Apply(0, bad); err == nil {
			t.Errorf("Apply(%q) accepted a malformed acknowledgement", bad)
		}
	}
}

// TestVerify builds a store state and a ledger by hand for each kind of broken promise,
// and for each allowed outcome of a write in flight, and checks Verify's verdict.
func TestVerify(t *testing.T) {
	const (
		p1 = "r00000/g00/p000001"
		p2 = "r00000/g00/p000002"
		b  = "r00000/g00/b000003"
		b0 = b + "/0"
		b1 = b + "/1"
		c  = "r00000/g00/c000000"
	)
	val := func(r record) []byte { return encode(r, []byte("x")) }
	batch := func(victim string) map[string][]byte {
		return map[string][]byte{
			b0: val(record{Key: b0, Batch: b, BatchSize: 2, Victim: victim}),
			b1: val(record{Key: b1, Batch: b, BatchSize: 2, Victim: victim}),
		}
	}
	merge := func(ms ...map[string][]byte) map[string][]byte {
		out := map[string][]byte{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	plain := func(keys ...string) map[string][]byte {
		out := map[string][]byte{}
		for _, k := range keys {
			out[k] = val(record{Key: k})
		}
		return out
	}
	tests := []struct {
		name  string
		acks  []string
		state map[string][]byte
		want  string // "" for no violation, else a part of the violation
	}{
		{"all there", []string{"put " + p1, "batch " + b0 + "," + b1}, merge(plain(p1), batch("")), ""},
		{"acked put lost", []string{"put " + p1}, nil, "acknowledged write of " + p1 + " is lost"},
		{"unacked put landed", nil, plain(p1), ""},
		{"damaged value", []string{"put " + p1}, map[string][]byte{p1: []byte("garbage")}, "damaged"},
		{"value at the wrong key", []string{"put " + p1}, map[string][]byte{p1: val(record{Key: p2})}, "belongs to key"},
		{"half a batch", nil, map[string][]byte{b0: batch("")[b0]}, "visible in part"},
		{"acked batch lost", []string{"batch " + b0 + "," + b1}, nil, "is lost"},
		{"batch visible, victim too", []string{"put " + p1}, merge(plain(p1), batch(p1)), "its delete of " + p1 + " is not"},
		{"unacked batch landed whole with its delete", []string{"put " + p1}, batch(p1), ""},
		{"unacked batch not landed keeps the victim", []string{"put " + p1}, plain(p1), ""},
		{"acked batch with victim", []string{"put " + p1, "batch " + b0 + "," + b1 + " " + p1}, batch(p1), ""},
		{"acked delete undone", []string{"put " + p1, "intent-del " + p1, "del " + p1}, plain(p1), "undone"},
		{"delete in flight landed", []string{"put " + p1, "intent-del " + p1}, nil, ""},
		{"delete in flight not landed", []string{"put " + p1, "intent-del " + p1}, plain(p1), ""},
		{"counter at acked version", []string{"ver " + c + " 2"}, map[string][]byte{c: val(record{Key: c, Version: 2})}, ""},
		{"counter ahead (write in flight)", []string{"ver " + c + " 2"}, map[string][]byte{c: val(record{Key: c, Version: 3})}, ""},
		{"counter went back", []string{"ver " + c + " 2"}, map[string][]byte{c: val(record{Key: c, Version: 1})}, "went back"},
		{"counter lost", []string{"ver " + c + " 1"}, nil, "counter " + c + " is lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := memstore.New()
			for k, v := range tt.state {
				if err := s.Put(ctx, "ns", []byte(k), v); err != nil {
					t.Fatal(err)
				}
			}

			l := NewLedger()
			for _, a := range tt.acks {
				if err := l.Apply(0, a); err != nil {
					t.Fatal(err)
				}
			}
			for _, rounds := range [][]int{nil, {0}} {
				c, err := l.Verify(ctx, s, "ns", rounds)
				if err != nil {
					t.Fatal(err)
				}
				got := strings.Join(c.Violations, "; ")
				if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
					t.Errorf("rounds %v: violations %q, want %q", rounds, got, tt.want)
				}
			}
		})
	}
}

// TestVerifyScopesRounds checks that a check of one round reads only that round's keys.
func TestVerifyScopesRounds(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	l := NewLedger()
	for r, k := range []string{"r00000/g00/p000001", "r00001/g00/p000001"} {
		if err := s.Put(ctx, "ns", []byte(k), encode(record{Key: k}, nil)); err != nil {
			t.Fatal(err)
		}
		if err := l.Apply(r, "put "+k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "ns", []byte("r00000/g00/p000009"), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	c, err := l.Verify(ctx, s, "ns", []int{1})
	if err != nil || c.Items != 1 || len(c.Violations) != 0 {
		t.Errorf("check of round 1: %+v, %v; want 1 item, no violation", c, err)
	}
	c, err = l.Verify(ctx, s, "ns", nil)
	if err != nil || c.Items != 3 || len(c.Violations) != 1 {
		t.Errorf("full check: %+v, %v; want 3 items and the damaged one found", c, err)
	}
}

// TestVerifyTwoNamespaces checks batches whose keys are split between the namespace and
// OtherNamespace.
func TestVerifyTwoNamespaces(t *testing.T) {
	const (
		p1 = "r00000/g00/p000001"
		b  = "r00000/g00/b000003"
		b0 = b + "/0"
		b1 = b + "/1"
	)
	val := func(r record) []byte { return encode(r, []byte("x")) }
	member := func(k string) map[string][]byte {
		return map[string][]byte{k: val(record{Key: k, Batch: b, BatchSize: 2})}
	}
	tests := []struct {
		name        string
		acks        []string
		main, other map[string][]byte
		want        string
	}{
		{"whole across namespaces", []string{"batch " + b0 + "," + b1}, member(b0), member(b1), ""},
		{"only the other half", nil, nil, member(b1), "visible in part"},
		{"acked, other half lost", []string{"batch " + b0 + "," + b1}, member(b0), nil, "visible in part"},
		{"a key in both", []string{"put " + p1}, map[string][]byte{p1: val(record{Key: p1})}, map[string][]byte{p1: val(record{Key: p1})}, "in both namespaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := memstore.New()
			for ns, state := range map[string]map[string][]byte{"ns": tt.main, OtherNamespace("ns"): tt.other} {
				for k, v := range state {
					if err := s.Put(ctx, ns, []byte(k), v); err != nil {
						t.Fatal(err)
					}
				}
			}
			l := NewLedger()
			for _, a := range tt.acks {
				if err := l.Apply(0, a); err != nil {
					t.Fatal(err)
				}
			}
			c, err := l.Verify(ctx, s, "ns", nil)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.Violations, "; ")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("violations %q, want %q", got, tt.want)
			}
		})
	}
}
