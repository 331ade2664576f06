package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/testbin"
)

// TestStorageFormat: a fresh storage gets the format marker, logged as a new storage (not
// as format 1 data); one without it (an older limitd's) gets it at the next start; one a newer limitd marked is refused with a message
// naming both formats and what to do, and is left as it was.
func TestStorageFormat(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	dir := t.TempDir()
	cfg := parse(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", dir))
	ns := trace.IndexNamespace(trace.DefaultTenant)
	start := func(f func(context.Context, *Daemon)) (string, hcl.Diagnostics) {
		t.Helper()
		return startLogged(t, cfg, f)
	}
	marker := func(ctx context.Context, d *Daemon) string {
		t.Helper()
		v, ok, err := d.Store.Get(ctx, ns, []byte(formatKey))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "(none)"
		}
		return string(v)
	}

	// A fresh storage.
	var got string
	logs, diags := start(func(ctx context.Context, d *Daemon) {
		got = marker(ctx, d)
		// As an older limitd leaves it: no marker.
		if _, err := d.Store.Delete(ctx, ns, []byte(formatKey)); err != nil {
			t.Fatal(err)
		}
	})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got != "2" || !strings.Contains(logs, "new storage: format recorded: format=2") || strings.Contains(logs, "from=1") {
		t.Fatalf("fresh storage: marker %s, logs:\n%s", got, logs)
	}

	// A storage without the marker.
	logs, diags = start(func(ctx context.Context, d *Daemon) {
		got = marker(ctx, d)
		// As a newer limitd leaves it.
		if err := d.Store.Put(ctx, ns, []byte(formatKey), []byte("3")); err != nil {
			t.Fatal(err)
		}
	})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got != "2" || !strings.Contains(logs, "storage format recorded: from=1 to=2") {
		t.Fatalf("storage without a marker: marker %s, logs:\n%s", got, logs)
	}

	// A storage a newer limitd wrote.
	_, diags = start(nil)
	if !diags.HasErrors() {
		t.Fatal("started on a storage a newer limitd wrote")
	}
	want := "storage was written by a newer limitd (format 3); this limitd reads formats up to 2: upgrade limitd, or restore the storage from a backup made before"
	if msg := diags.Error(); !strings.Contains(msg, want) {
		t.Fatalf("refusal %q does not say %q", msg, want)
	}

	// The refusal left the newer limitd's marker as it was.
	if _, diags = start(nil); !diags.HasErrors() {
		t.Fatal("the refusal changed the marker")
	}
}
