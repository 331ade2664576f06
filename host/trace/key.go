package trace

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/limitgraph/limit/internal/fsutil"
	"github.com/limitgraph/limit/sdk/storage"
)

// KeyFile is the name of the host's signing key inside its data directory. The file holds the
// 32-byte Ed25519 seed (RFC 8032 private key), raw, and must be readable by its owner only.
const KeyFile = "provenance.ed25519"

// Key is the host's Ed25519 key that signs provenance checkpoints and bundle headers.
type Key struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	fp   string
}

// NewKey returns the key of an Ed25519 seed (ed25519.SeedSize bytes).
func NewKey(seed []byte) (*Key, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("ed25519 seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	return &Key{priv: priv, pub: pub, fp: Fingerprint(pub)}, nil
}

// GenerateKey returns a new random key that is not stored anywhere (for tests and tools).
func GenerateKey() (*Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand.Reader, seed); err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return NewKey(seed)
}

// PublicKey returns the key's public half.
func (k *Key) PublicKey() ed25519.PublicKey { return k.pub }

// Fingerprint returns the key's fingerprint (see Fingerprint).
func (k *Key) Fingerprint() string { return k.fp }

// sign signs msg.
func (k *Key) sign(msg []byte) string {
	return hex.EncodeToString(ed25519.Sign(k.priv, msg))
}

// Fingerprint returns the lower-case hex SHA-256 of the 32 raw bytes of an Ed25519 public key.
// Checkpoints and bundle headers name their signing key by it.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// keyring holds the public keys whose checkpoints a store (or a bundle's verifier) accepts,
// by fingerprint: its own key's, and the keys it was told to trust.
type keyring struct {
	// own is the fingerprint of the store's own key (a bundle's: the key that signed it).
	own  string
	keys map[string]ed25519.PublicKey
}

// newKeyring returns the keyring of own and the keys trusted beside it.
func newKeyring(own ed25519.PublicKey, trusted ...ed25519.PublicKey) keyring {
	r := keyring{own: Fingerprint(own), keys: map[string]ed25519.PublicKey{Fingerprint(own): own}}
	for _, k := range trusted {
		r.keys[Fingerprint(k)] = k
	}
	return r
}

// get returns the key of fingerprint fp, if the keyring holds it.
func (r keyring) get(fp string) (ed25519.PublicKey, bool) {
	k, ok := r.keys[fp]
	return k, ok
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" block (PKIX, as openssl reads it): the
// format of a bundle's public_key file.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der := append(append([]byte(nil), ed25519SPKIPrefix...), pub...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ed25519SPKIPrefix is the DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410) up to the 32
// key bytes: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
var ed25519SPKIPrefix = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}

// ParsePublicKey reads a PEM "PUBLIC KEY" block holding an Ed25519 key. It accepts only the
// exact bytes MarshalPublicKey writes, so no byte of a bundle's key file can change unnoticed.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	if len(rest) != 0 {
		return nil, errors.New("data after the PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want Ed25519", k)
	}
	if string(MarshalPublicKey(pub)) != string(b) {
		return nil, errors.New("public key is not in canonical PEM form")
	}
	return pub, nil
}

// ParsePublicKeyFile reads a public key file a user saved, such as the public_key_pem of
// GET /v1/provenance/key written by `jq -r` (one newline more) or by an editor (none at the
// end). It is ParsePublicKey after removing the whitespace around the block: anything else
// (text before or after the block, a second block, another key type, a block not in the
// form MarshalPublicKey writes) is still refused. A bundle's own key file is read with the
// strict ParsePublicKey, so no byte of it can change unnoticed.
func ParsePublicKeyFile(b []byte) (ed25519.PublicKey, error) {
	trimmed := bytes.Trim(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block: the file is empty")
	}
	return ParsePublicKey(append(trimmed[:len(trimmed):len(trimmed)], '\n'))
}

// LoadOrCreateKey returns the key stored in dataDir/KeyFile, creating the directory (mode
// 0700) and a new random key (mode 0600) if there is none. Creation is atomic, so several
// processes starting at once end up with one key. It refuses a key file that others may read
// or write, or that is not exactly 32 bytes, with an error saying how to fix it.
func LoadOrCreateKey(dataDir string) (*Key, error) {
	k, _, err := OpenKey(dataDir)
	return k, err
}

// OpenKey is LoadOrCreateKey, and also reports whether the key was just created (there
// was no key file): a host then checks that storage holds nothing signed by a key it lost
// (see Store.ClaimKey).
func OpenKey(dataDir string) (k *Key, created bool, err error) {
	if dataDir == "" {
		return nil, false, errors.New("load signing key: no data directory given")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory for the signing key: %w", err)
	}
	path := filepath.Join(dataDir, KeyFile)
	k, err = loadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if created, err = createKey(path); err != nil {
			return nil, false, err
		}
		k, err = loadKey(path)
	}
	return k, created, err
}

// newKeyWhen says when a host starts with a new key in place of a key file it refused: one
// whose storage holds provenance the old key signed is refused (Store.ClaimKey).
const newKeyWhen = "if storage holds nothing the old key signed, or after moving the storage data aside " +
	"(a host refuses to start with a new key while storage holds provenance the old one signed; moved aside, those chains stay verifiable with the old key's public half)"

// loadKey reads and checks the key file at path.
func loadKey(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat signing key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o, which lets other users read or change it; run `chmod 600 %s` if the key was not exposed. "+
			"If it was, replace it: delete the file to make the host create a new key, which it accepts only %s", path, perm, path, newKeyWhen)
	}
	if fi.Size() != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s is %d bytes, want a %d-byte Ed25519 seed; the file is damaged or not a key: restore it from a backup (mode 0600). "+
			"Delete it to make the host create a new key only %s", path, fi.Size(), ed25519.SeedSize, newKeyWhen)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(f, seed); err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	return NewKey(seed)
}

// createKey writes a new key to path whole, and reports whether it did: if another process
// created path first, its key wins.
func createKey(path string) (bool, error) {
	k, err := GenerateKey()
	if err != nil {
		return false, err
	}
	err = fsutil.CreateSynced(path, k.priv.Seed(), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create signing key: %w", err)
	}
	return true, nil
}

// keyClaimPrefix is the prefix, in IndexNamespace, of the records that name the key each
// host (by its node id) signs this tenant's checkpoints with: "provenance-key/<node>" →
// the key's fingerprint.
const keyClaimPrefix = "provenance-key/"

// KeyMismatchError is ClaimKey's refusal: storage says that the host signed its provenance
// with another key than the one it holds now.
type KeyMismatchError struct {
	// Node is the host's node id.
	Node string
	// Signed is the fingerprint of the key the host's provenance in storage is signed with;
	// Held the fingerprint of the key the host holds now.
	Signed, Held string
	// Unclaimed tells that Signed was read off a stored checkpoint written before hosts
	// recorded their key, rather than from the host's own record of its key.
	Unclaimed bool
}

func (e *KeyMismatchError) Error() string {
	if e.Unclaimed {
		return fmt.Sprintf("storage holds traces signed by key %s, but the host's key is %s", e.Signed, e.Held)
	}
	return fmt.Sprintf("storage records that host %s signs with key %s, but the host's key is %s", e.Node, e.Signed, e.Held)
}

// ClaimKey checks, at a host's start, that the store's key is the one the host node signed
// its provenance with so far, so that a lost or replaced key file is noticed before it
// makes every stored chain unverifiable. The first start of a node records the key's
// fingerprint in storage (IndexNamespace, "provenance-key/<node>"); every later one compares
// it and refuses another key with a *KeyMismatchError. Hosts that share a storage backend
// each record their own key.
//
// A node with no record yet is a new host, or one that ran before hosts recorded their key.
// When its key is new (created: the key file was just made) and storage holds traces but no
// host has recorded a key, those traces were signed by the lost key of a host that ran
// before: ClaimKey refuses too, naming the key of a stored checkpoint. A new host that joins
// hosts which recorded their keys cannot tell a lost key of its own from theirs, and starts.
func (s *Store) ClaimKey(ctx context.Context, node string, created bool) error {
	if node == "" {
		return errors.New("claim the signing key: no node id given")
	}
	ns := IndexNamespace(s.tenant)
	key := []byte(keyClaimPrefix + node)
	fp := []byte(s.key.Fingerprint())
	stored, ok, err := s.st.Get(ctx, ns, key)
	if err != nil {
		return fmt.Errorf("read the host's key record: %w", err)
	}
	if ok {
		if !bytes.Equal(stored, fp) {
			return &KeyMismatchError{Node: node, Signed: string(stored), Held: string(fp)}
		}
		return nil
	}
	if created {
		signed, err := s.unclaimedSigner(ctx, ns)
		if err != nil {
			return err
		}
		if signed != "" && signed != string(fp) {
			return &KeyMismatchError{Node: node, Signed: signed, Held: string(fp), Unclaimed: true}
		}
	}
	res, err := s.st.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, Value: fp})
	if err != nil {
		return fmt.Errorf("record the host's key: %w", err)
	}
	if !res.Swapped && !bytes.Equal(res.Current, fp) {
		return &KeyMismatchError{Node: node, Signed: string(res.Current), Held: string(fp)}
	}
	return nil
}

// unclaimedSigner returns the key of a stored checkpoint when storage holds traces but no
// host has recorded its key (data written before hosts did), else "".
func (s *Store) unclaimedSigner(ctx context.Context, ns string) (string, error) {
	claims, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte(keyClaimPrefix), Limit: 1, KeysOnly: true})
	if err != nil {
		return "", fmt.Errorf("read the hosts' key records: %w", err)
	}
	if len(claims.Items) > 0 {
		return "", nil
	}
	traces, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: recordPrefix, Limit: 1})
	if err != nil {
		return "", fmt.Errorf("look for stored traces: %w", err)
	}
	if len(traces.Items) == 0 {
		return "", nil
	}
	kv := traces.Items[0]
	loc := s.sessionLocation(string(kv.Key[len(recordPrefix):]), string(kv.Value))
	ckpts, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: loc.ns, Prefix: ckptPrefix(loc.traceID), Limit: 1})
	if err != nil {
		return "", fmt.Errorf("read a checkpoint of trace %s: %w", loc.traceID, err)
	}
	if len(ckpts.Items) == 0 {
		return "", nil
	}
	var c Checkpoint
	if err := json.Unmarshal(ckpts.Items[0].Value, &c); err != nil || c.Key == "" {
		return "", nil // a damaged checkpoint: Verify reports it
	}
	return c.Key, nil
}

// KeyNodes returns, by node id, the fingerprint of the key each host sharing the storage
// recorded at its start (see ClaimKey): this host's own among them.
func (s *Store) KeyNodes(ctx context.Context) (map[string]string, error) {
	ns := IndexNamespace(s.tenant)
	out := map[string]string{}
	var after []byte
	for {
		page, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte(keyClaimPrefix), StartAfter: after, Limit: 100})
		if err != nil {
			return nil, fmt.Errorf("read the hosts' key records: %w", err)
		}
		for _, kv := range page.Items {
			out[string(kv.Key[len(keyClaimPrefix):])] = string(kv.Value)
		}
		if !page.More || len(page.Items) == 0 {
			return out, nil
		}
		after = page.Items[len(page.Items)-1].Key
	}
}

// keyNode returns the node that storage records signing with the key of fingerprint fp,
// "" when none does (or several do: one key file copied to several hosts).
func (s *Store) keyNode(ctx context.Context, fp string) (string, error) {
	nodes, err := s.KeyNodes(ctx)
	if err != nil {
		return "", err
	}
	found := ""
	for n, k := range nodes {
		if k == fp {
			if found != "" {
				return "", nil
			}
			found = n
		}
	}
	return found, nil
}
