package api

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
)

// Bounds of the warn lines the API writes for the requests it refuses (refusedLog): a
// burst, then a steady rate. A client sending bad requests as fast as it can gets about
// this many lines, not one per request; every refusal is still counted in the metrics.
const (
	refusedLogBurst = 20
	refusedLogRate  = 2 // lines per second, once the burst is spent
)

// refusedLog writes the warn lines of refused requests at a bounded rate (refusedLogBurst,
// refusedLogRate): one client must not be able to fill the log, or the disk under it, by
// sending requests the API refuses. The lines held back are counted, and the next line
// written says how many (suppressed).
type refusedLog struct {
	log hclog.Logger
	now func() time.Time // time.Now; tests set it

	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int
}

func newRefusedLog(log hclog.Logger) *refusedLog {
	return &refusedLog{log: log, now: time.Now, lim: rate.NewLimiter(refusedLogRate, refusedLogBurst)}
}

// warn writes msg with args at warn level, unless the rate is spent.
func (l *refusedLog) warn(msg string, args ...any) {
	l.mu.Lock()
	if !l.lim.AllowN(l.now(), 1) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
