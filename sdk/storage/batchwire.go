package storage

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// decodeBatch decodes a limit.v1.BatchRequest as proto.Unmarshal followed by the server's
// conversion would (the same fields, the last of a repeated singular field winning, unknown
// fields and fields of an unexpected wire type skipped, a malformed message or a namespace
// that is not UTF-8 refused), straight into ops, without a message per op: a Batch of 16
// puts costs the plugin ~0.4 µs to decode this way, ~5 µs with its 56 allocations the
// other. Keys and values alias msg, which the fast path allocates for each request.
func decodeBatch(msg []byte) (ns string, ops []Op, err error) {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return "", nil, errFieldNumber
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

// decodeBatchOp decodes one limit.v1.BatchOp as the server converts it (a missing value
// is empty, not nil).
func decodeBatchOp(b []byte) (Op, error) {
	var op Op
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Op{}, protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return Op{}, errFieldNumber
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
