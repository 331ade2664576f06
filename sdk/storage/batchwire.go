package storage

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// decodeBatch decodes a limit.v1.BatchRequest as proto.Unmarshal followed by the server's
// conversion would (the same fields, the last of a repeated singular field winning, unknown
// fields and fields of an unexpected wire type skipped, a malformed message or a namespace
// that is not UTF-8 refused), straight into ops, without a message per op: 4 allocations
// instead of 68 for a Batch of 16 puts and 3 other ops, 2.5× quicker (`go test -run '^$'
// -bench DecodeBatch -benchmem ./sdk/storage`). Keys and values alias msg, which the fast
// path allocates for each request.
func decodeBatch(msg []byte) (ns string, ops []Op, err error) {
	for len(msg) > 0 {
		num, typ, n, err := consumeTag(msg)
		if err != nil {
			return "", nil, err
		}
		msg = msg[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return "", nil, protowire.ParseError(n)
			}
			if !utf8.Valid(v) {
				return "", nil, errInvalidUTF8
			}
			ns, msg = string(v), msg[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return "", nil, protowire.ParseError(n)
			}
			op, err := decodeBatchOp(v)
			if err != nil {
				return "", nil, err
			}
			if ops == nil {
				ops = make([]Op, 0, 16)
			}
			ops, msg = append(ops, op), msg[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return "", nil, protowire.ParseError(n)
			}
			msg = msg[n:]
		}
	}
	return ns, ops, nil
}

var (
	errInvalidUTF8 = errors.New("string field contains invalid UTF-8")
	errFieldNumber = errors.New("invalid field number")
)

// consumeTag reads a field's tag, refusing what proto.Unmarshal refuses.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, protowire.ParseError(n)
	}
	if num > protowire.MaxValidNumber {
		return 0, 0, 0, errFieldNumber
	}
	return num, typ, n, nil
}

// decodeBatchOp decodes one limit.v1.BatchOp as the server converts it (a missing value
// is empty, not nil).
func decodeBatchOp(b []byte) (Op, error) {
	var op Op
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return Op{}, err
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return Op{}, protowire.ParseError(n)
			}
			op.Kind, b = OpKind(int32(x)), b[n:]
		case (num == 2 || num == 3 || num == 4) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return Op{}, protowire.ParseError(n)
			}
			switch num {
			case 2:
				op.Key = v
			case 3:
				op.Value = v
			default:
				if !utf8.Valid(v) {
					return Op{}, errInvalidUTF8
				}
				op.Namespace = string(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return Op{}, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	op.Value = nonNil(op.Value)
	return op, nil
}

// batchEncoding is a limit.v1.BatchRequest of ns and ops in its wire form, byte for byte
// what proto.Marshal makes of batchRequest(ns, ops), encoded without building it: the
// host's merged rounds wait on it (see the fast path's CallLongEncoded).
type batchEncoding struct {
	ns   string
	ops  []Op
	size int // once computed
}

// opNamespace is the namespace op is sent with in a batch of ns: empty for ns itself.
func opNamespace(ns string, op Op) string {
	if op.Namespace == ns {
		return ""
	}
	return op.Namespace
}

// opSize is the length of op's BatchOp message.
func opSize(ns string, op Op) int {
	n := 0
	if op.Kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(int32(op.Kind))))
	}
	if len(op.Key) > 0 {
		n += 1 + protowire.SizeBytes(len(op.Key))
	}
	if len(op.Value) > 0 {
		n += 1 + protowire.SizeBytes(len(op.Value))
	}
	if s := opNamespace(ns, op); s != "" {
		n += 1 + protowire.SizeBytes(len(s))
	}
	return n
}

// Size implements fastpath.Encoded.
func (e *batchEncoding) Size() int {
	if e.size == 0 {
		if e.ns != "" {
			e.size += 1 + protowire.SizeBytes(len(e.ns))
		}
		for _, op := range e.ops {
			e.size += 1 + protowire.SizeBytes(opSize(e.ns, op))
		}
	}
	return e.size
}

// Append implements fastpath.Encoded.
func (e *batchEncoding) Append(b []byte) []byte {
	if e.ns != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, e.ns)
	}
	for _, op := range e.ops {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(opSize(e.ns, op)))
		if op.Kind != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(int32(op.Kind))))
		}
		if len(op.Key) > 0 {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, op.Key)
		}
		if len(op.Value) > 0 {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendBytes(b, op.Value)
		}
		if s := opNamespace(e.ns, op); s != "" {
			b = protowire.AppendTag(b, 4, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	return b
}
