package config

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/trace"
)

// maxKeyFileBytes bounds what is read of a trusted key's file: a PEM public key is some
// hundred bytes.
const maxKeyFileBytes = 64 << 10

// trustedKeys reads host.trusted_keys. Each entry is the path of a PEM "PUBLIC KEY" file
// (as `limitctl key -f` writes it, or public_key_pem of GET /v1/provenance/key saved to a
// file), a PEM block written inline, or the one base64 line of such a block. Every entry
// that cannot be read or is not an Ed25519 public key is reported at its place in the
// list; a key listed twice gets a warning.
func (d *decoder) trustedKeys(attr *hcl.Attribute, entries []string) []TrustedKey {
	// The ranges of the list's elements, when it is written as a list: a diagnostic then
	// points at the entry, else at the whole value.
	ranges := make([]hcl.Range, len(entries))
	for i := range ranges {
		ranges[i] = attr.Expr.Range()
	}
	if exprs, diags := hcl.ExprList(attr.Expr); !diags.HasErrors() && len(exprs) == len(entries) {
		for i, e := range exprs {
			ranges[i] = e.Range()
		}
	}
	var out []TrustedKey
	seen := map[string]int{}
	for i, entry := range entries {
		rng := ranges[i]
		key, source, err := readTrustedKey(entry)
		if err != nil {
			d.diags = append(d.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid trusted_keys entry",
				Detail:   fmt.Sprintf("trusted_keys[%d]: %s", i, err),
				Subject:  rng.Ptr(),
				Context:  hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
			})
			continue
		}
		fp := trace.Fingerprint(key)
		if prev, ok := seen[fp]; ok {
			d.diags = append(d.diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Trusted key listed twice",
				Detail:   fmt.Sprintf("trusted_keys[%d] is the key of trusted_keys[%d] (fingerprint %s); one entry is enough.", i, prev, fp),
				Subject:  rng.Ptr(),
			})
			continue
		}
		seen[fp] = i
		out = append(out, TrustedKey{Key: key, Source: source, Range: rng})
	}
	return out
}

// readTrustedKey reads one entry of host.trusted_keys and returns the key and where it was
// read: the file's path, or "inline".
func readTrustedKey(entry string) ([]byte, string, error) {
	const how = "give the path of a PEM public key file (`limitctl key -f FILE` on the other host writes one), or its PEM block, or the base64 line of that block"
	text := strings.TrimSpace(entry)
	switch {
	case text == "":
		return nil, "", fmt.Errorf("the entry is empty: %s", how)
	case strings.HasPrefix(text, "-----BEGIN"):
		k, err := trace.ParsePublicKeyFile([]byte(text))
		if err != nil {
			return nil, "", fmt.Errorf("the inline PEM block is not an Ed25519 public key: %v", err)
		}
		return k, "inline", nil
	case isHex(text) && len(text) == 64:
		// The fingerprint GET /v1/provenance/key shows looks the same as the hex of a raw
		// key: taking one for the other would trust a key nobody holds, silently.
		return nil, "", fmt.Errorf("%q is 64 hex digits, the form of a key fingerprint; trusted_keys needs the public key itself: %s", text, how)
	case strings.HasPrefix(text, ed25519SPKIBase64):
		k, err := trace.ParsePublicKey([]byte("-----BEGIN PUBLIC KEY-----\n" + text + "\n-----END PUBLIC KEY-----\n"))
		if err != nil {
			return nil, "", fmt.Errorf("%q is not the base64 line of an Ed25519 public key's PEM block: %v", text, err)
		}
		return k, "inline", nil
	}
	k, err := readKeyFile(entry)
	if err != nil {
		return nil, "", err
	}
	return k, entry, nil
}

// readKeyFile reads the PEM public key file at path.
func readKeyFile(path string) ([]byte, error) {
	// Non-blocking, so that a FIFO or a terminal cannot hold the daemon up.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read the key file: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", path, fileKind(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the key file: %v", err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a PEM public key file", path, maxKeyFileBytes)
	}
	k, err := trace.ParsePublicKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not an Ed25519 public key file: %v (write one with `limitctl key -f %s` against the other host)", path, err, path)
	}
	return k, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s)%2 == 0
}

// ed25519SPKIBase64 is how the base64 line of every Ed25519 public key's PEM block starts:
// its first 12 bytes are the same DER for all (the algorithm's identifier).
const ed25519SPKIBase64 = "MCowBQYDK2VwAyEA"
