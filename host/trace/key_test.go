package trace

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "dir") // missing parents are created
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != ed25519.SeedSize {
		t.Fatalf("key file has mode %v and size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), ed25519.SeedSize)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("data dir has mode %v, want 0700", di.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.PublicKey().Equal(k2.PublicKey()) || k1.Fingerprint() != k2.Fingerprint() {
		t.Fatal("second start loaded a different key")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, KeyFile+".tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

// TestLoadOrCreateKeyConcurrent proves that processes starting together agree on one key.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]*Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if keys[i].Fingerprint() != keys[0].Fingerprint() {
			t.Fatalf("key %d differs from key 0", i)
		}
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	tests := []struct {
		name string
		size int
		mode os.FileMode
		dir  bool
		want string
	}{
		{name: "group readable", size: 32, mode: 0o640, want: "has mode 0640"},
		{name: "world readable", size: 32, mode: 0o604, want: "chmod 600"},
		{name: "group writable", size: 32, mode: 0o620, want: "has mode 0620"},
		{name: "too short", size: 31, mode: 0o600, want: "is 31 bytes, want a 32-byte"},
		{name: "too long", size: 64, mode: 0o600, want: "is 64 bytes"},
		{name: "empty", size: 0, mode: 0o600, want: "is 0 bytes"},
		{name: "directory", dir: true, want: "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeyFile)
			if tc.dir {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, make([]byte, tc.size), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil { // exact, whatever the umask
					t.Fatal(err)
				}
			}
			k, err := LoadOrCreateKey(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadOrCreateKey = %v, %v; want an error containing %q", k, err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
	if _, err := LoadOrCreateKey(""); err == nil {
		t.Fatal("LoadOrCreateKey(\"\") succeeded")
	}
}

func TestPublicKeyPEM(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b := MarshalPublicKey(k.PublicKey())
	pub, err := ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(k.PublicKey()) {
		t.Fatal("round trip changed the key")
	}
	if !strings.HasPrefix(string(b), "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("not a PEM public key: %s", b)
	}
	for _, bad := range []string{"", "junk", string(b) + "x", strings.Replace(string(b), "PUBLIC KEY", "PRIVATE KEY", 2)} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", bad)
		}
	}
}
