package crashtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// valueMagic starts every value the writer stores.
var valueMagic = []byte("LCT1")

// record is what a value says about itself.
type record struct {
	// Key is the key the value was written at.
	Key string
	// Batch is the id of the batch that wrote it ("" for a lone write), BatchSize how
	// many puts that batch holds, and Victim the key the batch deleted ("" for none).
	Batch     string
	BatchSize int
	Victim    string
	// Version counts the overwrites of a counter key (0 for other keys).
	Version uint32
	// PayloadLen is the length of the filler bytes.
	PayloadLen int
}

// encode builds the value of r with payload as filler, followed by the SHA-256 of
// everything before it.
func encode(r record, payload []byte) []byte {
	var b bytes.Buffer
	b.Write(valueMagic)
	putString := func(s string) {
		_ = binary.Write(&b, binary.BigEndian, uint16(len(s)))
		b.WriteString(s)
	}
	putString(r.Key)
	putString(r.Batch)
	_ = binary.Write(&b, binary.BigEndian, uint16(r.BatchSize))
	putString(r.Victim)
	_ = binary.Write(&b, binary.BigEndian, r.Version)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(payload)))
	b.Write(payload)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// errCorrupt marks a value that fails its own checks.
var errCorrupt = errors.New("corrupt value")

// decode checks a value's checksum and layout and returns its record.
func decode(v []byte) (record, error) {
	var r record
	if len(v) < len(valueMagic)+sha256.Size || !bytes.HasPrefix(v, valueMagic) {
		return r, fmt.Errorf("%w: %d bytes without the header", errCorrupt, len(v))
	}
	body, sum := v[:len(v)-sha256.Size], v[len(v)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return r, fmt.Errorf("%w: checksum mismatch over %d bytes", errCorrupt, len(v))
	}
	p := body[len(valueMagic):]
	short := fmt.Errorf("%w: truncated fields", errCorrupt)
	getString := func() (string, bool) {
		if len(p) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+n {
			return "", false
		}
		s := string(p[2 : 2+n])
		p = p[2+n:]
		return s, true
	}
	var ok bool
	if r.Key, ok = getString(); !ok {
		return r, short
	}
	if r.Batch, ok = getString(); !ok {
		return r, short
	}
	if len(p) < 2 {
		return r, short
	}
	r.BatchSize = int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if r.Victim, ok = getString(); !ok {
		return r, short
	}
	if len(p) < 8 {
		return r, short
	}
	r.Version = binary.BigEndian.Uint32(p)
	r.PayloadLen = int(binary.BigEndian.Uint32(p[4:]))
	if len(p[8:]) != r.PayloadLen {
		return r, fmt.Errorf("%w: payload is %d bytes, header says %d", errCorrupt, len(p[8:]), r.PayloadLen)
	}
	return r, nil
}
