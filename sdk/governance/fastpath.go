package governance

import (
	"context"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// The fast path carries Evaluate, which the host calls for every rule before and after
// every execution, over a Unix socket the plugin opens on the host's request
// (OpenFastPath), with the safeguards and the unary frames of sdk/internal/fastpath: a
// request is op fastEvaluate with an EvaluateRequest, its answer an EvaluateResponse or
// the gRPC status code and text the gRPC method would have returned; op fastCancel
// cancels a request. A unary gRPC call costs
// ~250–300 µs here, a frame ~25–70 µs.
//
// Framing version 2 adds inline calls (fastpath.Inline): a rule plugin starts a goroutine
// per request otherwise, and on a machine where waking an idle thread is dear that cost
// each evaluation ~50 µs of system calls. The host asks for version 2 and, from a plugin
// built on an older SDK (which refuses it), for version 1, whose calls are never inline.
const (
	// fastVersion is the newest framing version above; fastVersionPlain the first, without
	// inline calls.
	fastVersion      = 2
	fastVersionPlain = 1
	// fastEvaluate is the op of Evaluate; fastCancel cancels a request.
	fastEvaluate byte = 1
	fastCancel   byte = 2
	// fastConnections is how many connections the host opens; calls are multiplexed on them,
	// and all but one may carry an inline call.
	fastConnections = 4
)

// fastServer is the plugin's side of the fast path.
type fastServer struct {
	*fastpath.Server
	srv *server
}

// open offers the socket of one OpenFastPath call.
func (f *fastServer) open(req *limitv1.OpenFastPathRequest) (*limitv1.OpenFastPathResponse, error) {
	sess := fastpath.NewSession()
	return f.OpenVersions(req, fastVersionPlain, fastVersion, "limit-governance-", func(c *net.UnixConn) { f.ServeUnary(c, sess, fastCancel, f.handle) })
}

// handle serves a request with the gRPC service's method (validation and error mapping
// included).
func (f *fastServer) handle(ctx context.Context, op byte, msg []byte) (proto.Message, error) {
	if op != fastEvaluate {
		return nil, status.Errorf(codes.Unimplemented, "fast path: unknown operation %d", op)
	}
	return fastpath.Invoke(ctx, msg, f.srv.Evaluate)
}

// dialFast asks the plugin for a fast path and connects to it, and tells whether its
// calls may be inline (version 2). An error means the plugin offers none (an older plugin
// answers UNIMPLEMENTED) or it could not be set up.
func dialFast(ctx context.Context, rpc limitv1.GovernanceClient) (*fastpath.UnaryClient, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, fastSetupTimeout)
	defer cancel()
	version := uint32(fastVersion)
	r, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: version, Connections: fastpath.Requested(fastConnections)})
	if status.Code(err) == codes.FailedPrecondition {
		version = fastVersionPlain // a plugin built on an older SDK
		r, err = rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: version, Connections: fastpath.Requested(fastConnections)})
	}
	if err != nil {
		return nil, false, err
	}
	u, err := fastpath.DialUnary(ctx, r, fastpath.UnaryOptions{
		Version: version, Connections: fastConnections, CancelOp: fastCancel, What: "governance plugin",
	})
	return u, version >= 2, err
}
