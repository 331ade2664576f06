package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
)

// TestDataDirDiagnostics: a data_dir limitd cannot use is reported by Prepare (what
// `limitd -validate` runs) and by Start at host.data_dir's line, before any plugin
// starts, saying why.
func TestDataDirDiagnostics(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dataDir string
		want          string
		asRoot        bool // whether the case fails for root too
	}{
		{"a file", file, "is not a directory", true},
		{"under a file", filepath.Join(file, "data"), "cannot create", true},
		{"read-only", readOnly, "permission denied", false},
		{"under a read-only directory", filepath.Join(readOnly, "a", "b"), "cannot create", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.asRoot && os.Geteuid() == 0 {
				t.Skip("root may write anywhere")
			}
			cfg := parse(t, "host {\n  listen = \"127.0.0.1:0\"\n\n  data_dir = \""+tt.dataDir+"\"\n}\nrunner \"nosuch\" {}\n")
			check := func(what string, err string, subject int) {
				t.Helper()
				if !strings.Contains(err, "test.hcl:4") || !strings.Contains(err, "data_dir") || !strings.Contains(err, tt.want) {
					t.Errorf("%s: %q, want test.hcl:4, data_dir and %q", what, err, tt.want)
				}
				if strings.Contains(err, "nosuch") {
					t.Errorf("%s: plugins checked despite the data_dir: %s", what, err)
				}
				if subject != 4 {
					t.Errorf("%s: Subject on line %d, want 4", what, subject)
				}
			}
			_, diags := Prepare(context.Background(), cfg, t.TempDir(), tt.dataDir, hclog.NewNullLogger())
			if len(diags) != 1 || diags[0].Subject == nil {
				t.Fatalf("Prepare: %v", diags)
			}
			check("Prepare", diags.Error(), diags[0].Subject.Start.Line)

			_, diags = Start(context.Background(), Options{Config: cfg, Logger: hclog.NewNullLogger(), DefaultPluginDir: t.TempDir()})
			if len(diags) != 1 || diags[0].Subject == nil {
				t.Fatalf("Start: %v", diags)
			}
			check("Start", diags.Error(), diags[0].Subject.Start.Line)
		})
	}
}

// TestDataDirDefault: an unusable default data_dir is reported without a Subject, since
// the file does not set it, and says so.
func TestDataDirDefault(t *testing.T) {
	cfg := parse(t, "")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, diags := Prepare(context.Background(), cfg, t.TempDir(), file, hclog.NewNullLogger())
	if len(diags) != 1 || diags[0].Subject != nil || !strings.Contains(diags[0].Detail, "does not set host.data_dir") {
		t.Fatalf("%v", diags)
	}
}

// TestListenFailurePointsAtListen: when host.listen cannot be bound, Start's error points
// at it and says what to do.
func TestListenFailurePointsAtListen(t *testing.T) {
	testbin.Plugin(t, "storage-file")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := parse(t, "host {\n  data_dir = \""+t.TempDir()+"\"\n  listen = \""+ln.Addr().String()+"\"\n}\nstorage \"file\" {}\n")
	d, diags := Start(context.Background(), Options{Config: cfg, Logger: hclog.NewNullLogger(), DefaultPluginDir: testbin.PluginDir(t)})
	if d != nil {
		d.Shutdown(context.Background())
		t.Fatal("Start succeeded on a busy address")
	}
	if len(diags) != 1 || diags[0].Subject == nil || diags[0].Subject.Start.Line != 3 ||
		!strings.Contains(diags.Error(), "cannot listen on "+ln.Addr().String()) || !strings.Contains(diags[0].Detail, "host.listen") {
		t.Fatalf("%v", diags)
	}
}

// TestListenFailureStartsNoPlugin: a busy address is found before any plugin starts (a
// start that replays a storage log, only to be stopped); the log says no plugin started.
func TestListenFailureStartsNoPlugin(t *testing.T) {
	testbin.Plugin(t, "storage-file")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs syncbuf.Buffer
	cfg := parse(t, "host {\n  data_dir = \""+t.TempDir()+"\"\n  listen = \""+ln.Addr().String()+"\"\n}\nstorage \"file\" {}\n")
	d, diags := Start(context.Background(), Options{Config: cfg, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace}), DefaultPluginDir: testbin.PluginDir(t)})
	if d != nil {
		d.Shutdown(context.Background())
		t.Fatal("Start succeeded on a busy address")
	}
	if !diags.HasErrors() || strings.Contains(logs.String(), "plugin") {
		t.Fatalf("diagnostics %v; log:\n%s", diags, logs.String())
	}
}

// TestListenIPv4Only: an IPv4 address, 0.0.0.0 included, is bound on IPv4 alone (Go's
// "tcp" network binds 0.0.0.0 on [::], both families).
func TestListenIPv4Only(t *testing.T) {
	for addr, want := range map[string]string{"0.0.0.0:0": "0.0.0.0", "127.0.0.1:0": "127.0.0.1", "[::1]:0": "::1"} {
		ln, err := listen(addr)
		if err != nil {
			if want == "::1" {
				continue // no IPv6 here
			}
			t.Fatal(err)
		}
		if got := ln.Addr().(*net.TCPAddr).IP.String(); got != want {
			t.Errorf("listen(%q) bound %s, want %s", addr, got, want)
		}
		ln.Close()
	}
}

// TestJournalDirUnusable: a data_dir where the journal of pending outcomes cannot be made
// (here a file in its place) fails the start, pointing at data_dir, before any plugin
// starts: executions would otherwise run with nowhere to keep an outcome the storage does
// not take.
func TestJournalDirUnusable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pending-outcomes"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, "host {\n  data_dir = \""+dir+"\"\n  listen = \"127.0.0.1:0\"\n}\nstorage \"file\" {}\n")
	d, diags := Start(context.Background(), Options{Config: cfg, Logger: hclog.NewNullLogger(), DefaultPluginDir: t.TempDir()})
	if d != nil {
		d.Shutdown(context.Background())
		t.Fatal("Start succeeded without a journal of pending outcomes")
	}
	if len(diags) != 1 || diags[0].Summary != "Unusable data_dir" || diags[0].Subject == nil || diags[0].Subject.Start.Line != 2 ||
		!strings.Contains(diags[0].Detail, "journal of pending outcomes") {
		t.Fatalf("%v", diags)
	}
}
