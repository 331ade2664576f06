package governance

import "github.com/limitgraph/limit/host/trace"

// Flag is a flag on a trace; the trace store keeps them.
type Flag = trace.Flag
