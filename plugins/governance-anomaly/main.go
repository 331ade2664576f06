// Command limit-governance-anomaly is the LIMIT host's statistical anomaly rule. After
// each execution it compares the execution's figures (duration, output size, tokens,
// status), which the host passes in the request's metadata, with the same session's
// earlier executions, on a robust baseline (median and median absolute deviation; for
// errors, the session's smoothed error rate), and flags an execution whose robust z-score
// passes the threshold. It also compares each session's graph of latest executions with
// the graphs of the sessions before it by FGW distortion (the RD core, host/rd) and flags
// a session far from all of them (graph.go). State is in memory: per session, bounded by
// an LRU of sessions, and a bounded reference set of earlier sessions' graphs.
//
// Build it as `go build -o limit-governance-anomaly ./plugins/governance-anomaly`; the
// host starts it, it is not meant to be run by hand.
package main

import "github.com/limitgraph/limit/sdk/governance"

func main() {
	governance.Serve(newRule())
}
