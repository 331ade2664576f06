// Command limit-runner-llama is the LIMIT host's runner for local GGUF models: it runs
// llama.cpp in-process through github.com/hybridgroup/yzma (pure Go over libffi, no cgo
// of its own), one plugin process per session, and streams each generated token.
//
// llama.cpp itself comes as prebuilt shared libraries from the npm package
// @node-llama-cpp/linux-x64@3.21.1; `make llama-deps` fetches them into .cache/llama.
// The config's library_dir (or LIMIT_LLAMA_LIB_DIR) says where they are.
//
// Build it as `go build -o limit-runner-llama ./plugins/runner-llama`; the host starts
// it, it is not meant to be run by hand.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func main() {
	runner.Serve(newRunner(base.NewPluginLogger("runner.llama")))
}
