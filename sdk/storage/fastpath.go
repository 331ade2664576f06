package storage

import "github.com/limitgraph/limit/sdk/internal/fastpath"

// The fast path is a side channel for storage calls, opened over the plugin's gRPC service
// (OpenFastPath) and used instead of it when both sides offer it; sdk/internal/fastpath has
// the socket, its safeguards and the frames.
//
// The host sends requests and the plugin answers them, in any order, in the frames of
// sdk/internal/fastpath: a response's code is 0 with the response message, or the gRPC
// code of the error with its text. The message is the gRPC request or response
// message of op in protobuf encoding, and code is the gRPC status code the same call would
// have returned, so errors map exactly as on gRPC. Op fastCancel (no message, no response)
// cancels request id. Requests are served concurrently, so many goroutines share a few
// connections and concurrent writes still reach the backend together (group commit).
//
// Starting a goroutine per request costs a thread wake-up on a busy machine (tens of µs on
// two shared cores), so the host may set fastInline on a call sent on a connection where
// nothing else is in flight: the plugin then serves it on the goroutine that read it, and
// the host sends nothing more on that connection until the answer is back (it has others).
// A write is sent so only while another connection stays unclaimed: it may wait for a disk
// sync, and no call made meanwhile must queue behind it.
const (
	// fastVersion is the framing version above.
	fastVersion = 1
	// fastConnections is how many connections the host opens: requests are multiplexed, so
	// more only give calls a connection of their own (see fastInline).
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

	// fastInline, or'ed into op, lets the plugin serve the request on its reading goroutine
	// (fastpath.Inline).
	fastInline = fastpath.Inline
)
