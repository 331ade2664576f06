// Command limit-governance-jailbreak is the LIMIT host's jailbreak and prompt-injection
// rule. It normalises each text (Unicode NFKC, invisible characters removed, leetspeak
// folded), runs multilingual phrase rules on it, decodes embedded base64, hex,
// percent-encoded and ROT13 payloads and scans those too, and scores the text with a
// small trained model over windows, so an injection buried in a long document is scored
// on the window that holds it. Every finding names its rule, the span it matched and why.
//
// Build it as `go build -o limit-governance-jailbreak ./plugins/governance-jailbreak`;
// the host starts it, it is not meant to be run by hand.
package main

import "github.com/limitgraph/limit/sdk/governance"

func main() {
	governance.Serve(newRule())
}
