// Command limit-governance-keyword is the host's test governance plugin (see
// internal/testplugins/echo).
package main

import (
	"github.com/limitgraph/limit/internal/testplugins/echo"
	"github.com/limitgraph/limit/sdk/governance"
)

func main() { governance.Serve(echo.Rule{}) }
