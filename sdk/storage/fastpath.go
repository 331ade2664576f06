package storage

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/limitgraph/limit/sdk/base"
)

// The fast path is a side channel for storage calls, opened over the plugin's gRPC service
// (OpenFastPath) and used instead of it when both sides offer it. A unary gRPC call through
// go-plugin costs ~200 µs here (HTTP/2 and TLS framing, several goroutine hand-offs on each
// side); a frame on a Unix socket costs ~25 µs. It is safe where gRPC relies on mutual TLS
// because the socket lives in a fresh 0700 directory, accepts only the connections the host
// announced and is then removed, every connection must present a 32-byte random token that
// travelled over the mutually authenticated gRPC channel, and each side checks the other's
// kernel-reported credentials (same user; the plugin is the host's child).
//
// Framing (all integers little-endian). After the token and the plugin's one-byte
// acknowledgement, the host sends requests and the plugin answers, in any order:
//
//	request:  u32 length | u32 id | u8 op | i64 deadline (Unix ns, 0: none) | message
//	response: u32 length | u32 id | u8 code | message (code 0) or error text (gRPC code)
//
// length counts the bytes after itself. The message is the gRPC request or response
// message of op in protobuf encoding, and code is the gRPC status code the same call would
// have returned, so errors map exactly as on gRPC. Op fastCancel (no message, no response)
// cancels request id. Requests are served concurrently, so many goroutines share a few
// connections and concurrent writes still reach the backend together (group commit).
//
// Starting a goroutine per request costs a thread wake-up on a busy machine (tens of µs on
// two shared cores), so the host may set fastInline on a read sent on a connection where
// nothing else is in flight: the plugin then serves it on the goroutine that read it, and
// the host sends nothing more on that connection until the answer is back (it has others).
const (
	// fastVersion is the framing version above.
	fastVersion = 1
	// fastTokenSize is the length of the authentication token.
	fastTokenSize = 32
	// fastAck is the byte the plugin sends after accepting a token.
	fastAck = 0x6b
	// fastRequestHeader and fastResponseHeader are the fixed bytes after the length.
	fastRequestHeader  = 4 + 1 + 8
	fastResponseHeader = 4 + 1
	// fastMaxFrame bounds a frame's length, as gRPC's message size limit does.
	fastMaxFrame = base.MaxMessageSize + 64
	// fastMaxConnections bounds the connections the host may ask for.
	fastMaxConnections = 16
	// fastConnections is how many connections the host opens: requests are multiplexed, so
	// more only give reads a connection of their own (see fastInline).
	fastConnections = 4
)

// Fast-path operations; the message types are those of the gRPC method of the same name.
const (
	fastGet byte = iota + 1
	fastPut
	fastDelete
	fastScan
	fastBatch
	fastCompareAndSwap
	// fastPing has an empty message and answers an empty one: the bare cost of a call.
	fastPing
	// fastCancel cancels the request with the frame's id.
	fastCancel

	// fastInline, or'ed into op, lets the plugin serve the request on its reading goroutine.
	fastInline byte = 0x80
)

// frameWriter writes whole frames to a connection from many goroutines. A goroutine that
// finds the connection idle writes its frame itself; one that finds it busy appends its
// frame to a buffer that the busy writer sends next, so under load many frames leave in
// one system call and nobody waits for a lock held across a write.
type frameWriter struct {
	conn    net.Conn
	mu      sync.Mutex
	writing bool
	pending []byte
	spare   []byte
	err     error
}

// maxSpare bounds the buffer the writer keeps between bursts.
const maxSpare = 1 << 20

// write sends frame, or queues it behind the write in progress. An error means the
// connection is broken; a queued frame's failure is seen by its sender through the
// connection's reader instead.
func (w *frameWriter) write(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.writing {
		w.pending = append(w.pending, frame...)
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	w.mu.Unlock()
	_, err := w.conn.Write(frame)
	w.mu.Lock()
	for err == nil && len(w.pending) > 0 {
		out := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err = w.conn.Write(out)
		w.mu.Lock()
		if cap(out) <= maxSpare {
			w.spare = out[:0]
		}
	}
	if err != nil {
		w.err = err
		w.pending = nil
	}
	w.writing = false
	w.mu.Unlock()
	if err != nil {
		_ = w.conn.Close() // wakes the reader, which fails the calls still waiting
	}
	return err
}

// appendRequestHeader starts a request frame in b; finishFrame sets its length.
func appendRequestHeader(b []byte, id uint32, op byte, deadline int64) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, id)
	b = append(b, op)
	return binary.LittleEndian.AppendUint64(b, uint64(deadline))
}

// appendResponseHeader starts a response frame in b; finishFrame sets its length.
func appendResponseHeader(b []byte, id uint32, code byte) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, id)
	return append(b, code)
}

// finishFrame writes the length of the frame b into its first four bytes.
func finishFrame(b []byte) []byte {
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return b
}
