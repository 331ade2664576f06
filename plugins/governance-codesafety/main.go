// Command limit-governance-codesafety is the LIMIT host's unsafe-code rule. It parses
// Python code into a syntax tree with the standard library's ast module, in a
// long-lived /usr/bin/python3 helper the plugin starts and talks to over pipes (JSON
// lines), and reports the patterns Bandit and Semgrep flag, each mapped to unsafe,
// high_risk or malicious with its Bandit id where one exists and the line it is on.
// The helper is restarted when it dies or overruns its time, and its input is bounded.
//
// Build it as `go build -o limit-governance-codesafety ./plugins/governance-codesafety`;
// the host starts it, it is not meant to be run by hand.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

func main() {
	r := newRule(base.NewPluginLogger("governance.codesafety"))
	defer r.close()
	governance.Serve(r)
}
