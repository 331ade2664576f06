package config

import (
	"testing"
)

func TestRunnerPool(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		want int
	}{
		{"default", "runner \"python\" {}\n", DefaultRunnerPool},
		{"set", "runner \"python\" {\n  pool = 3\n}\n", 3},
		{"off", "runner \"python\" {\n  pool = 0\n}\n", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(tt.src), envMap(nil))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if got := cfg.Runners[0].PoolSize(); got != tt.want {
				t.Fatalf("pool = %d, want %d", got, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name, src, summary, detail string
		line                       int
	}{
		{"negative", "runner \"python\" {\n\n  pool = -1\n}\n", "Invalid pool", "got -1", 3},
		{"too big", "runner \"python\" {\n  pool = 1000\n}\n", "Invalid pool", "at most", 2},
		{"fraction", "runner \"python\" {\n  pool = 1.5\n}\n", "Invalid pool", "whole number", 2},
		{"not a runner", "storage \"bolt\" {\n  pool = 2\n}\n", "Unsupported argument", "pool", 2},
	} {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.line, tt.summary, tt.detail) })
	}
}
