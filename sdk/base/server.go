package base

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// Server adapts a Plugin to the base gRPC service.
type Server struct {
	limitv1.UnimplementedPluginServer
	Impl Plugin
}

// Info implements limitv1.PluginServer.
func (s *Server) Info(context.Context, *limitv1.InfoRequest) (*limitv1.InfoResponse, error) {
	return InfoToProto(s.Impl.PluginInfo()), nil
}

// ConfigSchema implements limitv1.PluginServer.
func (s *Server) ConfigSchema(context.Context, *limitv1.ConfigSchemaRequest) (*limitv1.ConfigSchemaResponse, error) {
	m, err := SchemaToProto(s.Impl.ConfigSchema())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return m, nil
}

// Configure implements limitv1.PluginServer.
func (s *Server) Configure(ctx context.Context, req *limitv1.ConfigureRequest) (resp *limitv1.ConfigureResponse, err error) {
	defer Recover(&err)
	raw := req.GetConfigJson()
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if !json.Valid(raw) {
		return nil, status.Error(codes.InvalidArgument, "config_json is not valid JSON")
	}
	ds := s.Impl.Configure(ctx, ConfigureRequest{Config: raw, ValidateOnly: req.GetValidateOnly(), DataDir: req.GetDataDir()})
	return &limitv1.ConfigureResponse{Diagnostics: DiagnosticsToProto(ds)}, nil
}

// Recover turns a panic in plugin code into an Internal gRPC error, so one bad request
// does not take the plugin process down, and logs the panic with its stack (to the host's
// log, under the plugin's name, once Serve runs). The SDK's servers already recover every
// call they make into the plugin's methods; use it as `defer base.Recover(&err)` in code of
// your own that serves requests.
func Recover(err *error) {
	if r := recover(); r != nil {
		*err = status.Errorf(codes.Internal, "plugin panic: %v", r)
		if l := panicLogger.Load(); l != nil {
			(*l).Error("plugin panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}
}

// panicLogger is where Recover logs panics: the logger Serve made.
var panicLogger atomic.Pointer[hclog.Logger]
