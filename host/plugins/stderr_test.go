package plugins

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestStderrTail: the tail keeps the last plain lines, not the ones go-plugin logs at a
// level of their own nor the runtime's scheduler trace; a start error quotes a panic from
// its first line.
func TestStderrTail(t *testing.T) {
	var tl stderrTail
	write := func(lines ...string) {
		for _, l := range lines {
			tl.Write([]byte(l))
			tl.Write([]byte("\n"))
		}
	}
	for i := range 30 {
		write(fmt.Sprintf("line %d", i))
	}
	write(`{"@level":"info","@message":"json log line"}`, "[WARN] prefixed", "SCHED 0ms: gomaxprocs=2", "  G1: status=4()", "", strings.Repeat("x", 2000))
	got := tl.Unlogged()
	if len(got) != stderrLines || got[0] != "line 11" || got[18] != "line 29" || len(got[19]) > stderrLineBytes+4 || !strings.HasSuffix(got[19], " …") {
		t.Fatalf("kept %q", got)
	}
	write("before", "panic: boom", "", "goroutine 1 [running]:", "main.f()", "\tmain.go:3", "more", "more", "more")
	if got := tl.Last(3); !slices.Equal(got, []string{"panic: boom", "goroutine 1 [running]:", "main.f()"}) {
		t.Fatalf("Last(3) = %q, want the panic's first lines", got)
	}
	if got := tl.Unlogged(); got[len(got)-1] != "before" {
		t.Fatalf("Unlogged ends with %q, want the line before the panic", got[len(got)-1])
	}
}
