package governance

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// oldOffers answers OpenFastPath as a plugin built on an SDK that speaks only framing
// version 1 would, and records the versions asked for.
type oldOffers struct {
	limitv1.GovernanceClient
	asked []uint32
}

func (o *oldOffers) OpenFastPath(_ context.Context, in *limitv1.OpenFastPathRequest, _ ...grpc.CallOption) (*limitv1.OpenFastPathResponse, error) {
	o.asked = append(o.asked, in.GetVersion())
	if in.GetVersion() != 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "fast path version %d not offered (this plugin speaks 1)", in.GetVersion())
	}
	// A version-1 offer; the test stops at it (no socket is behind it).
	return &limitv1.OpenFastPathResponse{Version: 1, Network: "unix", Address: "/nonexistent/s", Token: make([]byte, 32)}, nil
}

// TestFastPathAsksOlderPlugins: the host asks for framing version 2 (inline calls), and
// asks a plugin that refuses it for version 1, whose calls are never inline.
func TestFastPathAsksOlderPlugins(t *testing.T) {
	o := &oldOffers{}
	_, inline, err := dialFast(context.Background(), o)
	if !slices.Equal(o.asked, []uint32{fastVersion, fastVersionPlain}) {
		t.Fatalf("versions asked %v, want %d then %d", o.asked, fastVersion, fastVersionPlain)
	}
	if err == nil || inline {
		t.Fatalf("dial of a version-1 offer with no socket: inline %v, %v; want an error and no inline calls", inline, err)
	}
}
