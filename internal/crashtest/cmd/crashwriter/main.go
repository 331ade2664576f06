// Command crashwriter is the writer process of the crash-safety harness
// (internal/crashtest): started by crashtest.Run with the job in LIMIT_CRASHTEST_JOB, it
// starts the storage plugin, checks the store against the acknowledgements so far, then
// writes and acknowledges until it is killed. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/limitgraph/limit/internal/crashtest"
)

func main() {
	if os.Getenv(crashtest.WriterEnv) == "" {
		fmt.Fprintf(os.Stderr, "crashwriter is started by the crash-safety harness (internal/crashtest), which sets %s\n", crashtest.WriterEnv)
		os.Exit(2)
	}
	crashtest.WriterMain()
}
