package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestBundleFormats: limitd writes bundles of format 2, and VerifyBundle still verifies
// format 1: testdata/bundle-v1.tar.gz was exported by limitd at 531f237 (before flags had
// set_by and merged entries by), testdata/bundle-v1-setby.tar.gz by the versions after that
// still called their bundles format 1 (with those members). Both are signed by the key of
// 32 bytes 0x5a. A format this verifier does not know is refused naming it.
func TestBundleFormats(t *testing.T) {
	key, err := NewKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bundle-v1.tar.gz", "bundle-v1-setby.tar.gz"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := VerifyBundle(bytes.NewReader(b), VerifyOptions{TrustedKey: key.PublicKey()})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if sum.Format != "limit-provenance-bundle/1" || sum.Traces != 1 || sum.Entries != 4 {
			t.Errorf("%s: summary %+v", name, sum)
		}
	}

	s := newStore(t, memory(t))
	session := NewID()
	rec := traceIn(t, s, session, `{}`, 1, true)
	var buf bytes.Buffer
	sum, err := s.WriteBundle(context.Background(), &buf, BundleScope{SessionID: session})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Format != "limit-provenance-bundle/2" {
		t.Errorf("written format %q, want limit-provenance-bundle/2", sum.Format)
	}
	files := unpack(t, buf.Bytes())
	var first bundleLine
	if err := json.Unmarshal(lines(files.data[BundleRecords])[0], &first); err != nil || first.Bundle.Format != "limit-provenance-bundle/2" {
		t.Fatalf("header line %s: %v", lines(files.data[BundleRecords])[0], err)
	}
	if got, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: testKey.PublicKey()}); err != nil || got.Format != BundleFormat || got.Entries != rec.Length {
		t.Fatalf("verify a new bundle: %+v %v", got, err)
	}

	// A format from the future, properly signed.
	ls := lines(files.data[BundleRecords])
	ls[0] = bytes.Replace(ls[0], []byte(`"limit-provenance-bundle/2"`), []byte(`"limit-provenance-bundle/4"`), 1)
	future := resign(t, files.with(BundleRecords, bytes.Join(ls, nil)), testKey)
	_, err = VerifyBundle(bytes.NewReader(future.pack(t)), VerifyOptions{TrustedKey: testKey.PublicKey()})
	if err == nil || !strings.Contains(err.Error(), `bundle format "limit-provenance-bundle/4", this verifier reads "limit-provenance-bundle/1", "limit-provenance-bundle/2" and "limit-provenance-bundle/3": verify it with a newer limitctl`) {
		t.Fatalf("a format-4 bundle: %v", err)
	}
}
