package trace

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
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
			// The advice must work when storage holds chains the key signed, as the next
			// start refuses a new key then: it used to say to delete the file to make a
			// new key, nothing more.
			if !tc.dir && (!strings.Contains(err.Error(), "only if storage holds nothing the old key signed, or after moving the storage data aside") ||
				(tc.size != 32 && !strings.Contains(err.Error(), "restore it from a backup"))) {
				t.Fatalf("error %q does not say when a new key is accepted, or to restore the key from a backup", err)
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

// TestParsePublicKeyFile checks that a key file saved by hand may have whitespace around
// its one block (jq -r adds a newline, editors drop the last one), and that anything else
// ParsePublicKey refuses is still refused.
func TestParsePublicKeyFile(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b := string(MarshalPublicKey(k.PublicKey()))
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	for _, ok := range []string{
		b,
		b + "\n",
		strings.TrimSuffix(b, "\n"),
		"\n\n" + b + "\n\n",
		"  \r\n" + b + " \t\n",
	} {
		pub, err := ParsePublicKeyFile([]byte(ok))
		if err != nil {
			t.Errorf("ParsePublicKeyFile(%q): %v", ok, err)
		} else if !pub.Equal(k.PublicKey()) {
			t.Errorf("ParsePublicKeyFile(%q) changed the key", ok)
		}
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "not a PEM"},
		{"blank", " \n\n", "not a PEM"},
		{"garbage", "junk\n", "not a PEM"},
		{"text before", "key:\n" + b, "canonical PEM"},
		{"text after", b + "junk\n", "data after the PEM block"},
		{"second block", b + "\n" + string(MarshalPublicKey(other.PublicKey())), "data after the PEM block"},
		{"private key block", strings.ReplaceAll(b, "PUBLIC KEY", "PRIVATE KEY"), "not a PEM"},
		{"ecdsa key", ecPEM, "want Ed25519"},
		{"space inside", strings.Replace(b, "\n", " \n", 1), "canonical PEM"},
	} {
		if _, err := ParsePublicKeyFile([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParsePublicKeyFile = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// The strict parser still refuses what the lenient one forgives.
	if _, err := ParsePublicKey([]byte(b + "\n")); err == nil {
		t.Error("ParsePublicKey accepted a trailing blank line")
	}
}

// TestOpenKeyReportsCreation: OpenKey tells a key it just created from one it loaded.
func TestOpenKeyReportsCreation(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := OpenKey(dir)
	if err != nil || !created {
		t.Fatalf("first OpenKey: created=%v, %v; want a new key", created, err)
	}
	k2, created, err := OpenKey(dir)
	if err != nil || created || k2.Fingerprint() != k1.Fingerprint() {
		t.Fatalf("second OpenKey: created=%v, %v; want the same key, loaded", created, err)
	}
}

// TestClaimKey: a host's first start records its key; a later start with another key (the
// key file lost and made anew, or replaced) is refused naming both keys, and so is a new key
// over traces written before hosts recorded their key. Hosts sharing a storage each record
// their own key.
func TestClaimKey(t *testing.T) {
	ctx := context.Background()
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	storeWith := func(t *testing.T, st storage.Storage, k *Key) *Store {
		t.Helper()
		s, err := New(st, k, Options{TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mismatch := func(t *testing.T, err error, unclaimed bool) {
		t.Helper()
		var e *KeyMismatchError
		if !errors.As(err, &e) || e.Signed != testKey.Fingerprint() || e.Held != other.Fingerprint() || e.Unclaimed != unclaimed {
			t.Fatalf("ClaimKey = %v; want a mismatch of signed key %s and held key %s (unclaimed %v)", err, testKey.Fingerprint(), other.Fingerprint(), unclaimed)
		}
		for _, fp := range []string{e.Signed, e.Held} {
			if !strings.Contains(err.Error(), fp) {
				t.Fatalf("error %q does not name key %s", err, fp)
			}
		}
	}

	t.Run("recorded key", func(t *testing.T) {
		st := memstore.New()
		if err := storeWith(t, st, testKey).ClaimKey(ctx, "node-a", true); err != nil {
			t.Fatal(err)
		}
		if err := storeWith(t, st, testKey).ClaimKey(ctx, "node-a", false); err != nil {
			t.Fatalf("the same key again: %v", err)
		}
		for _, created := range []bool{true, false} {
			mismatch(t, storeWith(t, st, other).ClaimKey(ctx, "node-a", created), false)
		}
		// Another host on the same storage has its own key.
		if err := storeWith(t, st, other).ClaimKey(ctx, "node-b", true); err != nil {
			t.Fatalf("a second host: %v", err)
		}
	})
	t.Run("traces from before key records", func(t *testing.T) {
		st := memstore.New()
		if _, err := storeWith(t, st, testKey).Create(ctx, "01J0000000000000000000000S", TraceCustom, nil, "api"); err != nil {
			t.Fatal(err)
		}
		mismatch(t, storeWith(t, st, other).ClaimKey(ctx, "node-a", true), true)
		// A key file that was there is taken as the host's (it signed those traces, as
		// far as the host can tell), and recorded.
		if err := storeWith(t, st, testKey).ClaimKey(ctx, "node-a", false); err != nil {
			t.Fatal(err)
		}
		if err := storeWith(t, st, testKey).ClaimKey(ctx, "node-a", false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("empty storage", func(t *testing.T) {
		if err := storeWith(t, memstore.New(), other).ClaimKey(ctx, "node-a", true); err != nil {
			t.Fatal(err)
		}
	})
}

// TestForeignKeyIsErrForeignKey: a chain signed by another key than the store's is refused
// for an append and an export with an error that is both ErrCorrupt and ErrForeignKey (the
// API answers it 409), and Verify says which keys.
func TestForeignKeyIsErrForeignKey(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	rec, err := newStore(t, st).Create(ctx, "01J0000000000000000000000S", TraceCustom, nil, "api")
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(st, other, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, appendErr := s.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "a"})
	_, exportErr := s.WriteBundle(ctx, io.Discard, BundleScope{TraceIDs: []string{rec.ID}})
	for name, err := range map[string]error{"append": appendErr, "export": exportErr} {
		if !errors.Is(err, ErrForeignKey) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "signed by key "+testKey.Fingerprint()) {
			t.Errorf("%s: %v; want ErrForeignKey and ErrCorrupt naming the key", name, err)
		}
	}
	v, err := s.Verify(ctx, rec.ID)
	if err != nil || v.Valid || !strings.Contains(v.Error, "not by the host key "+other.Fingerprint()) {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
}
