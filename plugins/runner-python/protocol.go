package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The plugin talks to the sandbox over pipes in frames: a 4-byte big-endian length, then
// that many bytes, of which the first is the frame's type and the rest its fields. A field
// is a 1-byte key, a 4-byte big-endian length and the value. The Python side reads and
// writes them with int.from_bytes and bytes slicing alone, so the worker imports nothing
// (json costs ~7 ms of interpreter start-up here).

// Frame types.
const (
	// frameExec (plugin → worker) runs code: fields keyID, keyCode.
	frameExec byte = 'E'
	// frameReady (worker → plugin) says the interpreter is up: keyPID, keyVersion, keyUID.
	frameReady byte = 'R'
	// frameDone (worker → plugin) ends an execution: keyID, keyStatus, keyExit, keyError,
	// keyType, keyErrno, keyValue, keyCPU, keyCut.
	frameDone byte = 'D'
	// frameConfig (plugin → init) carries the sandbox configuration as JSON in keyJSON.
	frameConfig byte = 'C'
	// frameSetup (init → plugin) reports the isolation applied, as JSON in keyJSON.
	frameSetup byte = 'S'
	// frameExit (init → plugin) reports how the worker ended: keyExit, keySignal.
	frameExit byte = 'X'
	// frameFatal (init → plugin) says the sandbox could not be set up: keyError.
	frameFatal byte = 'F'
)

// Field keys.
const (
	keyID      byte = 'i'
	keyCode    byte = 'c'
	keyPID     byte = 'p'
	keyVersion byte = 'v'
	keyUID     byte = 'u'
	keyStatus  byte = 's'
	keyExit    byte = 'x'
	keyError   byte = 'e'
	keyType    byte = 't'
	keyErrno   byte = 'n'
	keyValue   byte = 'r'
	keyCPU     byte = 'm'
	keyJSON    byte = 'j'
	keySignal  byte = 'g'
	// keyCut says the worker cut the error text or value to its own bound (MAX_TEXT).
	keyCut byte = 'k'
)

// maxFrame bounds a frame read from the sandbox: the worker caps what it sends well below
// this, so a larger length means the stream is corrupt (the sandboxed code wrote to the
// protocol pipe) and the worker is killed.
const maxFrame = 8 << 20

// errFrameTooLarge reports a frame length beyond maxFrame.
var errFrameTooLarge = errors.New("frame too large")

// frame is one decoded frame.
type frame struct {
	typ    byte
	fields map[byte][]byte
}

// str returns field k as a string.
func (f frame) str(k byte) string { return string(f.fields[k]) }

// int returns field k parsed as a decimal integer, or 0.
func (f frame) int(k byte) int64 {
	n, _ := strconv.ParseInt(string(f.fields[k]), 10, 64)
	return n
}

// field is one key and value for encodeFrame.
type field struct {
	key byte
	val []byte
}

// encodeFrame builds a frame of type typ from fields, in order.
func encodeFrame(typ byte, fields ...field) []byte {
	n := 1
	for _, f := range fields {
		n += 5 + len(f.val)
	}
	b := make([]byte, 4, 4+n)
	binary.BigEndian.PutUint32(b, uint32(n))
	b = append(b, typ)
	for _, f := range fields {
		b = append(b, f.key)
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.val)))
		b = append(b, f.val...)
	}
	return b
}

// decodeFields parses the fields of a frame body (after the type byte).
func decodeFields(b []byte) (map[byte][]byte, error) {
	m := map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, fmt.Errorf("truncated field header")
		}
		k, n := b[0], binary.BigEndian.Uint32(b[1:5])
		if uint64(n) > uint64(len(b)-5) {
			return nil, fmt.Errorf("field %q length %d exceeds frame", k, n)
		}
		m[k] = b[5 : 5+n]
		b = b[5+n:]
	}
	return m, nil
}

// splitFrame takes one complete frame off the front of buf. It returns ok false when buf
// does not yet hold a whole frame.
func splitFrame(buf []byte) (f frame, rest []byte, ok bool, err error) {
	if len(buf) < 4 {
		return frame{}, buf, false, nil
	}
	n := binary.BigEndian.Uint32(buf)
	if n == 0 || n > maxFrame {
		return frame{}, buf, false, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	if uint64(len(buf)-4) < uint64(n) {
		return frame{}, buf, false, nil
	}
	body := buf[4 : 4+n]
	fields, err := decodeFields(body[1:])
	if err != nil {
		return frame{}, buf, false, fmt.Errorf("frame %q: %w", body[0], err)
	}
	return frame{typ: body[0], fields: fields}, buf[4+n:], true, nil
}

// readFrame reads one frame from r (a blocking stream).
func readFrame(r io.Reader) (frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return frame{}, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return frame{}, fmt.Errorf("truncated frame: %w", err)
	}
	fields, err := decodeFields(body[1:])
	if err != nil {
		return frame{}, fmt.Errorf("frame %q: %w", body[0], err)
	}
	return frame{typ: body[0], fields: fields}, nil
}
