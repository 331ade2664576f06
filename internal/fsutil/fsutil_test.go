package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCreateSynced: the file is created whole with its mode, no temporary file is left,
// and a second create leaves the first file as it is, saying it existed.
func TestCreateSynced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := CreateSynced(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateSynced(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: %v, want fs.ErrExist", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "one" {
		t.Fatalf("file holds %q (%v), want the first create's", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want the file alone", len(entries))
	}
}

// TestCheckCreatable: a directory that exists, or can be made under its closest existing
// ancestor, passes and nothing is left behind; one under a file or where mkdir fails does not.
func TestCheckCreatable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, ok := range map[string]bool{
		dir:                          true,
		filepath.Join(dir, "a", "b"): true,
		file:                         false,
		filepath.Join(file, "sub"):   false,
		"/proc/limit-check/x":        false,
	} {
		if err := CheckCreatable(path); (err == nil) != ok {
			t.Errorf("CheckCreatable(%s) = %v, want ok %v", path, err, ok)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the check left %d entries in %s, want only the file", len(ents), dir)
	}
}
