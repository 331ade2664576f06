package storage

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// viaProto is what the gRPC path makes of msg: proto.Unmarshal and the server's conversion.
func viaProto(msg []byte) (string, []Op, error) {
	var req limitv1.BatchRequest
	if err := proto.Unmarshal(msg, &req); err != nil {
		return "", nil, err
	}
	var ops []Op
	for _, o := range req.GetOps() {
		ops = append(ops, Op{Kind: OpKind(o.GetKind()), Key: o.GetKey(), Value: nonNil(o.GetValue()), Namespace: o.GetNamespace()})
	}
	return req.GetNamespace(), ops, nil
}

func sameOps(a, b []Op) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Key, b[i].Key) || a[i].Namespace != b[i].Namespace ||
			!bytes.Equal(a[i].Value, b[i].Value) || (a[i].Value == nil) != (b[i].Value == nil) {
			return false
		}
	}
	return true
}

// checkDecodeBatch fails when decodeBatch and the gRPC path disagree on msg: one refuses it
// and the other not, or they decode different batches.
func checkDecodeBatch(t *testing.T, msg []byte) {
	t.Helper()
	ns, ops, err := decodeBatch(msg)
	pns, pops, perr := viaProto(msg)
	if (err != nil) != (perr != nil) {
		t.Fatalf("%x: decodeBatch error %v, proto error %v", msg, err, perr)
	}
	if err == nil && (ns != pns || !sameOps(ops, pops)) {
		t.Fatalf("%x: decodeBatch %q %+v, proto %q %+v", msg, ns, ops, pns, pops)
	}
}

// batchSeeds are encodings the fuzzer starts from: ordinary batches, and the odd forms a
// proto decoder takes (fields repeated or out of order, unknown fields, a known field with
// another wire type, empty and absent values, negative and oversized kinds).
func batchSeeds() [][]byte {
	var seeds [][]byte
	m := &limitv1.BatchRequest{Namespace: "ns"}
	for i := range 16 {
		m.Ops = append(m.Ops, &limitv1.BatchOp{Kind: limitv1.BatchOp_KIND_PUT, Key: fmt.Appendf(nil, "k%02d", i), Value: bytes.Repeat([]byte("v"), 100)})
	}
	m.Ops = append(m.Ops, &limitv1.BatchOp{Kind: limitv1.BatchOp_KIND_DELETE, Key: []byte("d"), Namespace: "other"},
		&limitv1.BatchOp{Kind: limitv1.BatchOp_KIND_ASSERT_VALUE, Key: []byte("a"), Value: []byte{}}, &limitv1.BatchOp{})
	b, _ := proto.Marshal(m)
	seeds = append(seeds, b, nil, []byte{0x0a, 0x00})
	op := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	bytesField := func(num protowire.Number, v string) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), []byte(v))
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(num, protowire.VarintType), v)
	}
	weird := op(
		bytesField(1, "first"), bytesField(1, "last"), // the last namespace wins
		protowire.AppendBytes(tag(2, protowire.BytesType), op(bytesField(3, "v"), varint(1, 1), bytesField(2, "k"), varint(1, 2), bytesField(9, "x"))),
		varint(7, 42), // unknown
		protowire.AppendBytes(tag(2, protowire.BytesType), op(bytesField(1, "kind as bytes"), varint(2, 5), varint(1, 1<<40), bytesField(2, "k2"))),
		protowire.AppendBytes(tag(2, protowire.BytesType), op(varint(1, ^uint64(0)), bytesField(4, "ns\xff"))), // invalid UTF-8
	)
	seeds = append(seeds, weird, weird[:len(weird)-3], op(bytesField(1, "\xc3\x28")), op(tag(2, protowire.StartGroupType), tag(2, protowire.EndGroupType)))
	return seeds
}

func TestDecodeBatchAsProto(t *testing.T) {
	for _, s := range batchSeeds() {
		checkDecodeBatch(t, s)
		for cut := range len(s) { // every truncation too
			checkDecodeBatch(t, s[:cut])
		}
	}
}

// FuzzDecodeBatch: go test -fuzz FuzzDecodeBatch ./sdk/storage
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range batchSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkDecodeBatch)
}

func BenchmarkDecodeBatch(b *testing.B) {
	msg := batchSeeds()[0]
	b.Run("proto", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := viaProto(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := decodeBatch(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBatchEncodingAsProto: the host's encoding of a Batch is byte for byte proto.Marshal's
// of the same request, and the plugin decodes it back to the same ops.
func TestBatchEncodingAsProto(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000) // lengths of three varint bytes
	cases := []struct {
		ns  string
		ops []Op
	}{
		{"ns", nil},
		{"", []Op{{Kind: OpPut, Key: []byte("k")}}},
		{"ns", []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v")}, {Kind: OpDelete, Key: []byte("d")}}},
		{"ns", []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte{}}, {Kind: OpAssertAbsent, Key: []byte("a"), Namespace: "ns"}, {Kind: OpAssertValue, Key: []byte("b"), Value: big, Namespace: "other"}}},
		{"ns", []Op{{}, {Kind: OpKind(-1), Key: big}, {Kind: OpKind(1 << 20)}}},
	}
	for i := range 16 {
		cases[2].ops = append(cases[2].ops, Op{Kind: OpPut, Key: fmt.Appendf(nil, "bench/w%02d/k%05d", i, i), Value: bytes.Repeat([]byte("v"), 100)})
	}
	for i, c := range cases {
		e := &batchEncoding{ns: c.ns, ops: c.ops}
		got := e.Append([]byte("prefix"))
		want, err := proto.Marshal(batchRequest(c.ns, c.ops))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[len("prefix"):], want) || e.Size() != len(want) {
			t.Fatalf("case %d: encoded %x (Size %d), proto.Marshal %x", i, got[len("prefix"):], e.Size(), want)
		}
		checkDecodeBatch(t, want)
	}
}
