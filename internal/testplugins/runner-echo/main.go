// Command limit-runner-echo is the host's test runner plugin (see internal/testplugins/echo).
package main

import (
	"github.com/limitgraph/limit/internal/testplugins/echo"
	"github.com/limitgraph/limit/sdk/runner"
)

func main() { runner.Serve(&echo.Runner{}) }
