// Command limit-runner-llm is the LIMIT host's runner for hosted models: OpenAI,
// Anthropic, and any server speaking OpenAI's chat completions API (vLLM, llama-server,
// Ollama), through the providers' official Go SDKs. It retries with backoff that honours
// Retry-After, falls back to other models in order, streams answers as token events,
// prices them, and refuses executions once a session's budget is spent.
//
// Keys and URLs come only from the config block: neither SDK is allowed to read the
// environment, and the API key never appears in a log line, an error or a health answer.
//
// Build it as `go build -o limit-runner-llm ./plugins/runner-llm`; the host starts it,
// one process per session.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func main() {
	runner.Serve(newRunner(base.NewPluginLogger("runner.llm")))
}
