package plugins

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// relayLogger is the logger go-plugin relays a plugin's log lines through (it names it
// after the binary, see exitLogger.Named). A relayed line would otherwise repeat what the
// host's line says already: go-plugin adds the plugin's timestamp as a "timestamp" key
// beside the host's own, the plugin's "@module" beside the host's name for the process,
// and a key the plugin logs that the host's logger carries already, with the same value
// (a session's runner logs "session", which its logger names), would be written twice.
type relayLogger struct{ hclog.Logger }

func (l relayLogger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, l.dedupe(args)...)
}
func (l relayLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, l.dedupe(args)...) }
func (l relayLogger) Debug(msg string, args ...any) { l.Logger.Debug(msg, l.dedupe(args)...) }
func (l relayLogger) Info(msg string, args ...any)  { l.Logger.Info(msg, l.dedupe(args)...) }
func (l relayLogger) Warn(msg string, args ...any)  { l.Logger.Warn(msg, l.dedupe(args)...) }
func (l relayLogger) Error(msg string, args ...any) { l.Logger.Error(msg, l.dedupe(args)...) }

// Named keeps relaying: go-plugin names the logger it is given once more.
func (l relayLogger) Named(name string) hclog.Logger { return relayLogger{l.Logger.Named(name)} }

// dedupe drops from args go-plugin's trailing "timestamp", the plugin's "@module", and
// each key the logger implies, or args gave before, with the same value.
func (l relayLogger) dedupe(args []any) []any {
	n := len(args)
	if n >= 2 && n%2 == 0 && args[n-2] == "timestamp" {
		n -= 2 // go-plugin's, appended last
	}
	seen := map[string]string{}
	implied := l.ImpliedArgs()
	for i := 0; i+1 < len(implied); i += 2 {
		if k, ok := implied[i].(string); ok {
			seen[k] = fmt.Sprint(implied[i+1])
		}
	}
	out := make([]any, 0, n)
	for i := 0; i+1 < n; i += 2 {
		k, ok := args[i].(string)
		if !ok {
			out = append(out, args[i], args[i+1])
			continue
		}
		if k == "@module" {
			continue
		}
		v := fmt.Sprint(args[i+1])
		if prev, dup := seen[k]; dup && prev == v {
			continue
		}
		seen[k] = v
		out = append(out, args[i], args[i+1])
	}
	if n%2 == 1 {
		out = append(out, args[n-1]) // hclog reports the odd one out
	}
	return out
}
