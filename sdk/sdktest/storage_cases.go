package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limitgraph/limit/sdk/storage"
)

// StorageCases returns the storage conformance cases, in the order they are meant to run.
//
// The suite is sized for a durable backend that syncs every write to disk (1–5 ms a write):
// bulk data goes in batches, and the whole suite makes about 1,900 writes (about 13 s at
// 5 ms a write), most of them in the compare-and-swap race and the concurrent puts.
func StorageCases() []StorageCase {
	return []StorageCase{
		storageCase("put-get", casePutGet),
		storageCase("get-missing", caseGetMissing),
		storageCase("overwrite", caseOverwrite),
		storageCase("delete", caseDelete),
		storageCase("empty-value", caseEmptyValue),
		storageCase("binary-keys-values", caseBinary),
		storageCase("key-size-limit", caseKeySize),
		storageCase("empty-key-rejected", caseEmptyKey),
		storageCase("namespace-limits", caseNamespaceLimits),
		storageCase("large-value", caseLargeValue),
		storageCase("namespace-isolation", caseNamespaceIsolation),
		storageCase("scan-order", caseScanOrder),
		storageCase("scan-prefix", caseScanPrefix),
		storageCase("scan-pagination", casePagination),
		storageCase("scan-start-after", caseStartAfter),
		storageCase("scan-keys-only", caseKeysOnly),
		storageCase("batch-order", caseBatchOrder),
		storageCase("batch-invalid-rejected-whole", caseBatchInvalid),
		storageCase("batch-readers-see-all-or-nothing", caseBatchReaders),
		storageCase("batch-conditions", caseBatchConditions),
		storageCase("batch-condition-race", caseBatchConditionRace),
		storageCase("batch-namespaces", caseBatchNamespaces),
		storageCase("cas-create", caseCASCreate),
		storageCase("cas-swap", caseCASSwap),
		storageCase("cas-delete", caseCASDelete),
		storageCase("cas-race", caseCASRace),
		storageCase("concurrent-puts", caseConcurrentPuts),
		storageCase("snapshot", caseSnapshot),
	}
}

// casePutGet: a value comes back as written, and neither side's slices alias the store's.
func casePutGet(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	key, want := []byte("greeting"), []byte("hello, world")
	in := bytes.Clone(want)
	if err := put(ctx, s, ns, key, in); err != nil {
		return err
	}
	in[0] = 'J' // the store must have copied the value it was given
	got, found, err := s.Get(ctx, ns, key)
	if err != nil {
		return fmt.Errorf("get %q after put: %w", key, err)
	}
	if !found {
		return fmt.Errorf("get %q after put: not found, want %q", key, want)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("get %q after put: got %q, want %q (a store must copy the slices it is given)", key, got, want)
	}
	got[0] = 'Y' // the caller owns what Get returned
	if err := wantValue(ctx, s, ns, key, want, "after changing the slice a previous get returned (returned slices must belong to the caller)"); err != nil {
		return err
	}
	return wantValue(ctx, s, ns, []byte("greeting"), want, "with a key in a new slice")
}

// caseGetMissing: absent keys are reported as not found, not as errors or empty values.
func caseGetMissing(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	if err := wantMissing(ctx, s, ns, []byte("nothing"), "in a namespace never written"); err != nil {
		return err
	}
	if err := put(ctx, s, ns, []byte("other"), []byte("x")); err != nil {
		return err
	}
	for _, k := range []string{"nothing", "othe", "other\x00", "otherx", "Other"} {
		if err := wantMissing(ctx, s, ns, []byte(k), `when only "other" exists`); err != nil {
			return err
		}
	}
	return nil
}

// caseOverwrite: a put replaces the whole value, also with a shorter one, without adding a key.
func caseOverwrite(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	key := []byte("k")
	for _, v := range []string{"a rather long first value", "2nd", "third value", ""} {
		if err := put(ctx, s, ns, key, []byte(v)); err != nil {
			return err
		}
		if err := wantValue(ctx, s, ns, key, []byte(v), "after overwriting it"); err != nil {
			return err
		}
	}
	if err := put(ctx, s, ns, key, []byte("last")); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	return wantItems("scan after five puts of one key", items, []storage.KeyValue{kv("k", "last")}, false)
}

// caseDelete: delete removes the key and tells whether it existed.
func caseDelete(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	if err := putAll(ctx, s, ns, keyValues("k1", "k2")); err != nil {
		return err
	}
	existed, err := s.Delete(ctx, ns, []byte("k1"))
	if err != nil {
		return fmt.Errorf("delete existing key %q: %w", "k1", err)
	}
	if !existed {
		return fmt.Errorf("delete existing key %q: existed is false, want true", "k1")
	}
	if err := wantMissing(ctx, s, ns, []byte("k1"), "after deleting it"); err != nil {
		return err
	}
	if err := wantValue(ctx, s, ns, []byte("k2"), []byte("value of k2"), `after deleting "k1"`); err != nil {
		return err
	}
	for _, c := range []struct{ ns, key, when string }{
		{ns, "k1", "already deleted"},
		{ns, "never", "never written"},
		{n.ns("empty"), "k1", "in a namespace never written"},
	} {
		existed, err := s.Delete(ctx, c.ns, []byte(c.key))
		if err != nil {
			return fmt.Errorf("delete key %q %s: %w", c.key, c.when, err)
		}
		if existed {
			return fmt.Errorf("delete key %q %s: existed is true, want false", c.key, c.when)
		}
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	return wantItems(`scan after deleting "k1"`, items, keyValues("k2"), false)
}

// caseEmptyValue: an empty value is stored, found, scanned and deleted like any other.
func caseEmptyValue(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	if err := put(ctx, s, ns, []byte("empty"), []byte{}); err != nil {
		return err
	}
	if err := put(ctx, s, ns, []byte("nil"), nil); err != nil {
		return err
	}
	for _, k := range []string{"empty", "nil"} {
		got, found, err := s.Get(ctx, ns, []byte(k))
		if err != nil {
			return fmt.Errorf("get %q holding an empty value: %w", k, err)
		}
		if !found {
			return fmt.Errorf("get %q holding an empty value: not found, want found with an empty value (an empty value is not a missing key)", k)
		}
		if len(got) != 0 {
			return fmt.Errorf("get %q holding an empty value: got %s, want empty", k, show(got))
		}
	}
	if err := wantMissing(ctx, s, ns, []byte("missing"), "beside keys with empty values"); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	if err := wantItems("scan of keys with empty values", items, []storage.KeyValue{kv("empty", ""), kv("nil", "")}, false); err != nil {
		return err
	}
	existed, err := s.Delete(ctx, ns, []byte("empty"))
	if err != nil {
		return fmt.Errorf("delete %q holding an empty value: %w", "empty", err)
	}
	if !existed {
		return fmt.Errorf("delete %q holding an empty value: existed is false, want true", "empty")
	}
	return wantMissing(ctx, s, ns, []byte("empty"), "after deleting it")
}

// allBytes returns the 256 byte values in order.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// caseBinary: keys and values are bytes, not text or paths.
func caseBinary(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	keys := [][]byte{
		{0x00}, {0x00, 0x00}, {0x00, 0xff}, {0xff}, {0xff, 0xff}, {0x7f}, {0x80},
		[]byte("a\x00b"), []byte("/"), []byte("a/b"), []byte("/a/b/"), []byte(".."), []byte("."),
		[]byte("../x"), []byte("./."), []byte("\\"), []byte("a\\b"), []byte("..\\x"),
		{0xc3, 0x28}, // not UTF-8
		[]byte(" "), []byte("\n"), []byte("%2F"), []byte("*"), []byte("'; --"),
		allBytes(),
	}
	var want []storage.KeyValue
	for _, k := range keys {
		v := append(allBytes(), k...)
		if err := put(ctx, s, ns, k, v); err != nil {
			return err
		}
		want = append(want, storage.KeyValue{Key: k, Value: v})
	}
	for _, w := range want {
		if err := wantValue(ctx, s, ns, w.Key, w.Value, "with a binary key and value"); err != nil {
			return err
		}
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, Limit: 7})
	if err != nil {
		return err
	}
	return wantItems("scan of binary keys", items, sorted(want), false)
}

// caseKeySize: a key of MaxKeySize bytes works, one byte more is rejected everywhere and
// never stored cut short.
func caseKeySize(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	maxKey := make([]byte, storage.MaxKeySize)
	for i := range maxKey {
		maxKey[i] = 'a' + byte(i%26)
	}
	if err := put(ctx, s, ns, maxKey, []byte("max")); err != nil {
		return fmt.Errorf("a key of MaxKeySize (%d) bytes must be accepted: %w", storage.MaxKeySize, err)
	}
	if err := wantValue(ctx, s, ns, maxKey, []byte("max"), "of MaxKeySize bytes"); err != nil {
		return err
	}
	long := append(bytes.Clone(maxKey), 'x')
	what := fmt.Sprintf("key of MaxKeySize+1 (%d) bytes", len(long))
	if err := wantInvalid("put "+what, s.Put(ctx, ns, long, []byte("too long"))); err != nil {
		return err
	}
	_, _, err := s.Get(ctx, ns, long)
	if err := wantInvalid("get "+what, err); err != nil {
		return err
	}
	_, err = s.Delete(ctx, ns, long)
	if err := wantInvalid("delete "+what, err); err != nil {
		return err
	}
	err = s.Batch(ctx, ns, []storage.Op{{Kind: storage.OpPut, Key: long, Value: []byte("too long")}})
	if err := wantInvalid("batch put "+what, err); err != nil {
		return err
	}
	_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: long, Value: []byte("too long")})
	if err := wantInvalid("compare-and-swap "+what, err); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	return wantItems("scan after the rejected writes (a too-long key must not be stored cut short)", items,
		[]storage.KeyValue{{Key: maxKey, Value: []byte("max")}}, false)
}

// caseEmptyKey: an empty key is rejected by every call.
func caseEmptyKey(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	for _, key := range [][]byte{nil, {}} {
		what := "empty key"
		if key == nil {
			what = "nil key"
		}
		if err := wantInvalid("put with "+what, s.Put(ctx, ns, key, []byte("v"))); err != nil {
			return err
		}
		_, _, err := s.Get(ctx, ns, key)
		if err := wantInvalid("get with "+what, err); err != nil {
			return err
		}
		_, err = s.Delete(ctx, ns, key)
		if err := wantInvalid("delete with "+what, err); err != nil {
			return err
		}
		err = s.Batch(ctx, ns, []storage.Op{{Kind: storage.OpPut, Key: key, Value: []byte("v")}})
		if err := wantInvalid("batch put with "+what, err); err != nil {
			return err
		}
		_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, Value: []byte("v")})
		if err := wantInvalid("compare-and-swap with "+what, err); err != nil {
			return err
		}
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	return wantItems("scan after the rejected writes", items, nil, false)
}

// caseNamespaceLimits: an empty, too long or non-UTF-8 namespace is rejected; one of MaxNamespaceSize
// bytes works and is not confused with a longer one cut short.
func caseNamespaceLimits(ctx context.Context, s storage.Storage, n *namespaces) error {
	key, val := []byte("k"), []byte("v")
	for _, c := range []struct{ ns, what string }{
		{"", "an empty namespace"},
		{strings.Repeat("n", storage.MaxNamespaceSize+1), fmt.Sprintf("a namespace of MaxNamespaceSize+1 (%d) bytes", storage.MaxNamespaceSize+1)},
		{"ns\xff", "a namespace that is not valid UTF-8"},
	} {
		if err := wantInvalid("put in "+c.what, s.Put(ctx, c.ns, key, val)); err != nil {
			return err
		}
		_, _, err := s.Get(ctx, c.ns, key)
		if err := wantInvalid("get in "+c.what, err); err != nil {
			return err
		}
		_, err = s.Delete(ctx, c.ns, key)
		if err := wantInvalid("delete in "+c.what, err); err != nil {
			return err
		}
		_, err = s.Scan(ctx, storage.ScanRequest{Namespace: c.ns})
		if err := wantInvalid("scan of "+c.what, err); err != nil {
			return err
		}
		err = s.Batch(ctx, c.ns, []storage.Op{{Kind: storage.OpPut, Key: key, Value: val}})
		if err := wantInvalid("batch in "+c.what, err); err != nil {
			return err
		}
		_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: c.ns, Key: key, Value: val})
		if err := wantInvalid("compare-and-swap in "+c.what, err); err != nil {
			return err
		}
	}
	base := n.ns("")
	maxNS := n.ns(strings.Repeat("m", storage.MaxNamespaceSize-len(base)-1))
	if err := put(ctx, s, maxNS, key, val); err != nil {
		return fmt.Errorf("a namespace of MaxNamespaceSize (%d) bytes must be accepted: %w", storage.MaxNamespaceSize, err)
	}
	if err := wantInvalid("put in a namespace one byte longer than a valid one", s.Put(ctx, maxNS+"x", key, []byte("other"))); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: maxNS})
	if err != nil {
		return err
	}
	return wantItems("scan of a namespace of MaxNamespaceSize bytes", items, []storage.KeyValue{{Key: key, Value: val}}, false)
}

// caseLargeValue: a value of MaxValueSize bytes round-trips; one byte more is rejected.
func caseLargeValue(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	// Random bytes in a block whose size is prime, repeated: no page or chunk of the value
	// equals its neighbour, so a misplaced chunk shows.
	block := make([]byte, 65521)
	for i := range block {
		block[i] = byte(rand.Uint32())
	}
	big := make([]byte, storage.MaxValueSize)
	for i := 0; i < len(big); i += len(block) {
		copy(big[i:], block)
	}
	key := []byte("big")
	if err := put(ctx, s, ns, key, big); err != nil {
		return fmt.Errorf("a value of MaxValueSize (%d) bytes must be accepted: %w", storage.MaxValueSize, err)
	}
	if err := wantValue(ctx, s, ns, key, big, "holding MaxValueSize bytes"); err != nil {
		return err
	}
	res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Limit: 1})
	if err != nil {
		return err
	}
	if err := wantPage("scan of a MaxValueSize value", res, []storage.KeyValue{{Key: key, Value: big}}, false); err != nil {
		return err
	}
	tooBig := make([]byte, storage.MaxValueSize+1)
	what := fmt.Sprintf("a value of MaxValueSize+1 (%d) bytes", len(tooBig))
	if err := wantInvalid("put of "+what, s.Put(ctx, ns, key, tooBig)); err != nil {
		return err
	}
	err = s.Batch(ctx, ns, []storage.Op{{Kind: storage.OpPut, Key: key, Value: tooBig}})
	if err := wantInvalid("batch put of "+what, err); err != nil {
		return err
	}
	_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: true, Expected: big, Value: tooBig})
	if err := wantInvalid("compare-and-swap to "+what, err); err != nil {
		return err
	}
	return wantValue(ctx, s, ns, key, big, "after rejected writes of a too large value")
}

// caseNamespaceIsolation: namespaces never share keys, also when one name is a prefix of
// another or looks like a path.
func caseNamespaceIsolation(ctx context.Context, s storage.Storage, n *namespaces) error {
	one, two := n.ns("one"), n.ns("two")
	if err := put(ctx, s, one, []byte("k"), []byte("in one")); err != nil {
		return err
	}
	if err := put(ctx, s, one, []byte("only-one"), []byte("x")); err != nil {
		return err
	}
	if err := put(ctx, s, two, []byte("k"), []byte("in two")); err != nil {
		return err
	}
	if err := wantValue(ctx, s, one, []byte("k"), []byte("in one"), "in namespace one"); err != nil {
		return err
	}
	if err := wantValue(ctx, s, two, []byte("k"), []byte("in two"), "in namespace two"); err != nil {
		return err
	}
	if err := wantMissing(ctx, s, two, []byte("only-one"), "in namespace two (it was written to namespace one)"); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: two})
	if err != nil {
		return err
	}
	if err := wantItems("scan of namespace two", items, []storage.KeyValue{kv("k", "in two")}, false); err != nil {
		return err
	}
	if existed, err := s.Delete(ctx, two, []byte("only-one")); err != nil || existed {
		return fmt.Errorf(`delete "only-one" in namespace two, where it was never written: existed=%v err=%v, want false and no error`, existed, err)
	}
	if err := wantValue(ctx, s, one, []byte("only-one"), []byte("x"), "in namespace one after deleting it in namespace two"); err != nil {
		return err
	}
	if _, err := s.Delete(ctx, one, []byte("k")); err != nil {
		return fmt.Errorf("delete %q in namespace one: %w", "k", err)
	}
	if err := wantValue(ctx, s, two, []byte("k"), []byte("in two"), "in namespace two after deleting it in namespace one"); err != nil {
		return err
	}

	// Names that are prefixes of each other or look like paths.
	tags := []string{"a", "ab", "a/b", "a/../ab", "b"}
	for _, tag := range tags {
		ns := n.ns(tag)
		if err := putAll(ctx, s, ns, []storage.KeyValue{kv("k", "in "+tag), kv("own-"+tag, tag)}); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		ns := n.ns(tag)
		items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
		if err != nil {
			return err
		}
		want := sorted([]storage.KeyValue{kv("k", "in "+tag), kv("own-"+tag, tag)})
		if err := wantItems(fmt.Sprintf("scan of namespace %q (beside namespaces %q)", ns, tags), items, want, false); err != nil {
			return err
		}
		if err := wantValue(ctx, s, ns, []byte("k"), []byte("in "+tag), fmt.Sprintf("in namespace %q", ns)); err != nil {
			return err
		}
	}
	return nil
}

// caseScanOrder: scans return keys in ascending bytewise order (not by text collation,
// signed bytes, length or insertion order).
func caseScanOrder(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	all := keyValues("a", "a\x00", "a\x00\x00", "a\x01", "a\xff", "a\xff\xff", "aa", "ab", "b", "B", "A", "Z",
		"\x00", "\x7f", "\x80", "\xff", "_", "~", "a b", "a-b", "é", "e", "f", "1", "10", "9")
	shuffled := append([]storage.KeyValue(nil), all...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	// Half through single puts, half through a batch.
	half := len(shuffled) / 2
	for _, it := range shuffled[:half] {
		if err := put(ctx, s, ns, it.Key, it.Value); err != nil {
			return err
		}
	}
	if err := putAll(ctx, s, ns, shuffled[half:]); err != nil {
		return err
	}
	want := sorted(all)
	res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit})
	if err != nil {
		return err
	}
	if err := wantPage("scan of keys that differ in byte order and text order", res, want, false); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, Limit: 3})
	if err != nil {
		return err
	}
	return wantItems("scan in pages of 3", items, want, false)
}

// caseScanPrefix: a prefix scan returns exactly the keys with the prefix, and More only
// says whether more of those follow.
func caseScanPrefix(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	all := keyValues("o", "p", "p/1", "p/2", "p/2/x", "pa", "p\xff", "p\xff\xff", "q", "\xff", "P")
	if err := putAll(ctx, s, ns, all); err != nil {
		return err
	}
	all = sorted(all)
	for _, prefix := range []string{"p/", "p", "p\xff", "p\xff\xff", "\xff", "o", "zz", "p/3", "pa/"} {
		res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte(prefix), Limit: storage.MaxScanLimit})
		if err != nil {
			return err
		}
		if err := wantPage(fmt.Sprintf("scan with prefix %q", prefix), res, withPrefix(all, prefix), false); err != nil {
			return err
		}
	}
	// Pages of a prefix scan; "pa" follows the last key with prefix "p/", but More is false.
	res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte("p/"), Limit: 2})
	if err != nil {
		return err
	}
	if err := wantPage(`first page of 2 with prefix "p/"`, res, keyValues("p/1", "p/2"), true); err != nil {
		return err
	}
	res, err = scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte("p/"), StartAfter: []byte("p/2"), Limit: 2})
	if err != nil {
		return err
	}
	if err := wantPage(`second page with prefix "p/" (keys without the prefix follow it)`, res, keyValues("p/2/x"), false); err != nil {
		return err
	}
	// A page that ends exactly at the last key with the prefix.
	withP := withPrefix(all, "p")
	res, err = scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte("p"), Limit: len(withP)})
	if err != nil {
		return err
	}
	return wantPage(fmt.Sprintf(`scan with prefix "p" and limit %d, the number of such keys`, len(withP)), res, withP, false)
}

// casePagination: paging with start_after visits every key once, in order; limits are
// defaulted and clamped.
func casePagination(ctx context.Context, s storage.Storage, n *namespaces) error {
	const total, pageSize = 2500, 100
	ns := n.ns("")
	all := make([]storage.KeyValue, total)
	for i := range all {
		all[i] = kv(fmt.Sprintf("item-%05d", i), fmt.Sprintf("value-%05d", i))
	}
	shuffled := append([]storage.KeyValue(nil), all...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := 0; i < total; i += 500 {
		if err := putAll(ctx, s, ns, shuffled[i:i+500]); err != nil {
			return err
		}
	}
	var after []byte
	for page := 0; page*pageSize < total; page++ {
		res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, StartAfter: after, Limit: pageSize})
		if err != nil {
			return err
		}
		last := (page+1)*pageSize >= total
		want := all[page*pageSize : min((page+1)*pageSize, total)]
		if err := wantPage(fmt.Sprintf("page %d of %d keys in pages of %d", page, total, pageSize), res, want, !last); err != nil {
			return err
		}
		after = res.Items[len(res.Items)-1].Key
	}
	for _, c := range []struct {
		limit, want int
		what        string
	}{
		{0, storage.DefaultScanLimit, "limit 0 (DefaultScanLimit)"},
		{storage.MaxScanLimit, storage.MaxScanLimit, "limit MaxScanLimit"},
		{storage.MaxScanLimit + 1, storage.MaxScanLimit, "limit MaxScanLimit+1 (clamped to MaxScanLimit)"},
		{total * 10, storage.MaxScanLimit, fmt.Sprintf("limit %d (clamped to MaxScanLimit)", total*10)},
	} {
		res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Limit: c.limit})
		if err != nil {
			return err
		}
		if err := wantPage("scan with "+c.what, res, all[:c.want], true); err != nil {
			return err
		}
	}
	res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, StartAfter: all[total-storage.MaxScanLimit-1].Key, Limit: 5 * storage.MaxScanLimit})
	if err != nil {
		return err
	}
	if err := wantPage("scan of the last MaxScanLimit keys with a larger limit", res, all[total-storage.MaxScanLimit:], false); err != nil {
		return err
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte("item-01"), Limit: 33})
	if err != nil {
		return err
	}
	return wantItems(`prefix scan "item-01" in pages of 33`, items, all[1000:2000], false)
}

// caseStartAfter: start_after is exclusive, need not name an existing key, and a scan that
// starts past the last key is empty.
func caseStartAfter(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	if err := putAll(ctx, s, ns, keyValues("b1", "b2", "b3", "c")); err != nil {
		return err
	}
	for _, c := range []struct {
		prefix, after string
		want          []string
	}{
		{"", "c", nil},
		{"", "zzz", nil},
		{"", "\xff\xff\xff", nil},
		{"", "b2", []string{"b3", "c"}},
		{"", "b2\x00", []string{"b3", "c"}},
		{"", "b", []string{"b1", "b2", "b3", "c"}},
		{"", "a", []string{"b1", "b2", "b3", "c"}},
		{"b", "b3", nil},
		{"b", "bz", nil},
		{"b", "b", []string{"b1", "b2", "b3"}},
		{"b", "a", []string{"b1", "b2", "b3"}},
		{"b", "b1", []string{"b2", "b3"}},
		{"c", "b9", []string{"c"}},
		{"c", "c", nil},
	} {
		res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, Prefix: []byte(c.prefix), StartAfter: []byte(c.after), Limit: 10})
		if err != nil {
			return err
		}
		if err := wantPage(fmt.Sprintf("scan with prefix %q start_after %q", c.prefix, c.after), res, keyValues(c.want...), false); err != nil {
			return err
		}
	}
	return nil
}

// caseKeysOnly: a keys-only scan returns the keys, in order, without values.
func caseKeysOnly(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	var all []storage.KeyValue
	for i := range 10 {
		all = append(all, storage.KeyValue{Key: fmt.Appendf(nil, "key-%02d", i), Value: bytes.Repeat([]byte{byte('a' + i)}, 1000)})
	}
	if err := putAll(ctx, s, ns, all); err != nil {
		return err
	}
	res, err := scanPage(ctx, s, storage.ScanRequest{Namespace: ns, KeysOnly: true})
	if err != nil {
		return err
	}
	if err := wantItems("keys-only scan", res.Items, all, true); err != nil {
		return err
	}
	if res.More {
		return fmt.Errorf("keys-only scan of all keys: More is true, want false")
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, KeysOnly: true, Limit: 3})
	if err != nil {
		return err
	}
	if err := wantItems("keys-only scan in pages of 3", items, all, true); err != nil {
		return err
	}
	res, err = scanPage(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	return wantItems("scan with values after a keys-only scan", res.Items, all, false)
}

// caseBatchOrder: a batch applies its operations in order.
func caseBatchOrder(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	if err := put(ctx, s, ns, []byte("pre"), []byte("old")); err != nil {
		return err
	}
	if err := s.Batch(ctx, ns, nil); err != nil {
		return fmt.Errorf("empty batch: %w", err)
	}
	p := func(k, v string) storage.Op { return storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v)} }
	d := func(k string) storage.Op { return storage.Op{Kind: storage.OpDelete, Key: []byte(k)} }
	ops := []storage.Op{
		p("a", "1"), p("b", "2"), d("b"), // put then delete: absent
		d("pre"), p("pre", "new"), // delete then put: present
		p("a", "1b"), // last put wins
		d("never"),   // deleting a missing key is fine
		p("c", "3"), d("c"), p("c", "3b"),
	}
	if err := s.Batch(ctx, ns, ops); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns})
	if err != nil {
		return err
	}
	want := []storage.KeyValue{kv("a", "1b"), kv("c", "3b"), kv("pre", "new")}
	return wantItems("scan after a batch of puts and deletes of the same keys (ops apply in order)", items, want, false)
}

// caseBatchInvalid: a batch with an invalid operation is rejected as a whole.
func caseBatchInvalid(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	before := []storage.KeyValue{kv("doomed", "v"), kv("keep", "kept")}
	if err := putAll(ctx, s, ns, before); err != nil {
		return err
	}
	valid := []storage.Op{
		{Kind: storage.OpPut, Key: []byte("new1"), Value: []byte("n1")},
		{Kind: storage.OpDelete, Key: []byte("keep")},
		{Kind: storage.OpPut, Key: []byte("doomed"), Value: []byte("changed")},
		{Kind: storage.OpPut, Key: []byte("new2"), Value: []byte("n2")},
	}
	big := make([]byte, storage.MaxValueSize)
	tooMany := make([]storage.Op, storage.MaxBatchOps+1)
	for i := range tooMany {
		tooMany[i] = storage.Op{Kind: storage.OpPut, Key: fmt.Appendf(nil, "many-%05d", i)}
	}
	for _, c := range []struct {
		what string
		ops  []storage.Op
	}{
		{"a key of MaxKeySize+1 bytes last", append(append([]storage.Op(nil), valid...), storage.Op{Kind: storage.OpPut, Key: make([]byte, storage.MaxKeySize+1)})},
		{"an empty key in the middle", append(append(append([]storage.Op(nil), valid[:2]...), storage.Op{Kind: storage.OpDelete}), valid[2:]...)},
		{"an unknown operation kind last", append(append([]storage.Op(nil), valid...), storage.Op{Kind: storage.OpKind(99), Key: []byte("x")})},
		{"a value of MaxValueSize+1 bytes last", append(append([]storage.Op(nil), valid...), storage.Op{Kind: storage.OpPut, Key: []byte("x"), Value: make([]byte, storage.MaxValueSize+1)})},
		{fmt.Sprintf("MaxBatchOps+1 (%d) operations", len(tooMany)), append(append([]storage.Op(nil), valid...), tooMany...)},
		{"more than MaxBatchBytes in total", append(append([]storage.Op(nil), valid...),
			storage.Op{Kind: storage.OpPut, Key: []byte("big1"), Value: big},
			storage.Op{Kind: storage.OpPut, Key: []byte("big2"), Value: big},
			storage.Op{Kind: storage.OpPut, Key: []byte("big3"), Value: big})},
	} {
		if err := wantInvalid("batch with "+c.what, s.Batch(ctx, ns, c.ops)); err != nil {
			return err
		}
		items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, KeysOnly: false})
		if err != nil {
			return err
		}
		if err := wantItems("scan after the rejected batch with "+c.what+" (none of its operations may apply)", items, before, false); err != nil {
			return err
		}
	}
	return nil
}

// caseBatchReaders: readers running during batches see each batch whole or not at all.
func caseBatchReaders(ctx context.Context, s storage.Storage, n *namespaces) error {
	const keys, generations, readers = 50, 50, 4
	ns := n.ns("")
	batch := func(gen int) error {
		ops := make([]storage.Op, keys)
		v := fmt.Appendf(nil, "gen-%06d", gen)
		for i := range ops {
			ops[i] = storage.Op{Kind: storage.OpPut, Key: fmt.Appendf(nil, "g/%02d", i), Value: v}
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			return fmt.Errorf("batch of generation %d: %w", gen, err)
		}
		return nil
	}
	if err := batch(0); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		done  atomic.Bool
		wg    sync.WaitGroup
		once  sync.Once
		first error
		scans atomic.Int64
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel() })
	}
	for r := range readers {
		wg.Go(func() {
			lastGen := ""
			for {
				stop := done.Load()
				res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte("g/"), Limit: 2 * keys})
				if err != nil {
					fail(fmt.Errorf("reader %d: scan during batches: %w", r, err))
					return
				}
				scans.Add(1)
				if len(res.Items) != keys {
					fail(fmt.Errorf("reader %d: scan during batches returned %d keys, want %d (every batch writes all of them)", r, len(res.Items), keys))
					return
				}
				gen := string(res.Items[0].Value)
				for _, it := range res.Items {
					if string(it.Value) != gen {
						fail(fmt.Errorf("reader %d: one scan saw %q = %q and %q = %q: a batch was visible in part", r, res.Items[0].Key, gen, it.Key, it.Value))
						return
					}
				}
				if gen < lastGen {
					fail(fmt.Errorf("reader %d: saw generation %q after %q: time went backwards", r, gen, lastGen))
					return
				}
				lastGen = gen
				if stop {
					return
				}
			}
		})
	}
	for gen := 1; gen <= generations && ctx.Err() == nil; gen++ {
		// Let the readers scan between batches (for up to 10 ms), so batches and scans
		// overlap even against a backend whose batches take microseconds.
		seen := scans.Load()
		for wait := time.Now(); scans.Load() == seen && time.Since(wait) < 10*time.Millisecond; {
			time.Sleep(50 * time.Microsecond)
		}
		if err := batch(gen); err != nil {
			fail(err)
		}
	}
	done.Store(true)
	wg.Wait()
	if first != nil {
		return first
	}
	want := fmt.Appendf(nil, "gen-%06d", generations)
	return wantValue(ctx, s, ns, []byte("g/00"), want, "after the last batch")
}

// caseCASCreate: compare-and-swap with ExpectPresent false creates a key once.
func caseCASCreate(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	key := []byte("lock")
	res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, Value: []byte("v1")})
	if err != nil {
		return fmt.Errorf("create-if-absent: %w", err)
	}
	if err := wantCAS("create-if-absent of a missing key", res, true, true, "v1"); err != nil {
		return err
	}
	if err := wantValue(ctx, s, ns, key, []byte("v1"), "after create-if-absent"); err != nil {
		return err
	}
	res, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, Value: []byte("v2")})
	if err != nil {
		return fmt.Errorf("second create-if-absent: %w", err)
	}
	if err := wantCAS("second create-if-absent of the same key", res, false, true, "v1"); err != nil {
		return err
	}
	return wantValue(ctx, s, ns, key, []byte("v1"), "after a failed create-if-absent")
}

// caseCASSwap: compare-and-swap replaces a value only when the expected one is there.
func caseCASSwap(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	key := []byte("k")
	if err := put(ctx, s, ns, key, []byte("v1")); err != nil {
		return err
	}
	cas := func(expected, value string) (storage.CASResult, error) {
		res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: true, Expected: []byte(expected), Value: []byte(value)})
		if err != nil {
			return res, fmt.Errorf("compare-and-swap %q expecting %q: %w", key, expected, err)
		}
		return res, nil
	}
	res, err := cas("v1", "v2")
	if err != nil {
		return err
	}
	if err := wantCAS(`swap "v1" for "v2" when "v1" is there`, res, true, true, "v2"); err != nil {
		return err
	}
	for _, wrong := range []string{"v1", "v", "v2\x00", "V2", ""} {
		res, err := cas(wrong, "wrong")
		if err != nil {
			return err
		}
		if err := wantCAS(fmt.Sprintf(`swap expecting %q when "v2" is there`, wrong), res, false, true, "v2"); err != nil {
			return err
		}
	}
	if err := wantValue(ctx, s, ns, key, []byte("v2"), "after failed swaps"); err != nil {
		return err
	}
	res, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: []byte("absent"), ExpectPresent: true, Expected: []byte{}, Value: []byte("x")})
	if err != nil {
		return fmt.Errorf("compare-and-swap of a missing key expecting an empty value: %w", err)
	}
	if err := wantCAS("swap of a missing key expecting an empty value", res, false, false, ""); err != nil {
		return err
	}
	if err := wantMissing(ctx, s, ns, []byte("absent"), "after a failed swap expecting it present"); err != nil {
		return err
	}
	// An empty value is present: it matches Expected empty, not ExpectPresent false.
	if err := put(ctx, s, ns, []byte("empty"), nil); err != nil {
		return err
	}
	res, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: []byte("empty"), Value: []byte("x")})
	if err != nil {
		return fmt.Errorf("create-if-absent of a key holding an empty value: %w", err)
	}
	if err := wantCAS("create-if-absent of a key holding an empty value", res, false, true, ""); err != nil {
		return err
	}
	res, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: []byte("empty"), ExpectPresent: true, Value: []byte("filled")})
	if err != nil {
		return fmt.Errorf("swap of a key holding an empty value, expecting it: %w", err)
	}
	if err := wantCAS("swap of a key holding an empty value, expecting it", res, true, true, "filled"); err != nil {
		return err
	}
	return wantValue(ctx, s, ns, []byte("empty"), []byte("filled"), "after swapping its empty value")
}

// caseCASDelete: compare-and-swap with Delete removes a key only when the expected value is there.
func caseCASDelete(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	key := []byte("k")
	if err := put(ctx, s, ns, key, []byte("v1")); err != nil {
		return err
	}
	del := func(expected string) (storage.CASResult, error) {
		res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: true, Expected: []byte(expected), Delete: true})
		if err != nil {
			return res, fmt.Errorf("compare-and-delete %q expecting %q: %w", key, expected, err)
		}
		return res, nil
	}
	res, err := del("wrong")
	if err != nil {
		return err
	}
	if err := wantCAS(`delete expecting "wrong" when "v1" is there`, res, false, true, "v1"); err != nil {
		return err
	}
	if err := wantValue(ctx, s, ns, key, []byte("v1"), "after a failed compare-and-delete"); err != nil {
		return err
	}
	res, err = del("v1")
	if err != nil {
		return err
	}
	if err := wantCAS(`delete expecting "v1" when "v1" is there`, res, true, false, ""); err != nil {
		return err
	}
	if err := wantMissing(ctx, s, ns, key, "after compare-and-delete"); err != nil {
		return err
	}
	res, err = del("v1")
	if err != nil {
		return err
	}
	if err := wantCAS("delete of a key already deleted", res, false, false, ""); err != nil {
		return err
	}
	if existed, err := s.Delete(ctx, ns, key); err != nil || existed {
		return fmt.Errorf("delete after compare-and-delete: existed=%v err=%v, want false and no error", existed, err)
	}
	return nil
}

// wantCAS checks a compare-and-swap result.
func wantCAS(what string, res storage.CASResult, swapped, present bool, current string) error {
	if res.Swapped != swapped || res.Present != present || (present && string(res.Current) != current) || (!present && len(res.Current) != 0) {
		want := fmt.Sprintf("Swapped=%v Present=%v", swapped, present)
		if present {
			want += fmt.Sprintf(" Current=%q", current)
		}
		return fmt.Errorf("%s: got Swapped=%v Present=%v Current=%s, want %s", what, res.Swapped, res.Present, show(res.Current), want)
	}
	return nil
}

// caseCASRace: concurrent read-modify-write loops through compare-and-swap lose no update.
// A compare-and-swap that ignores Expected loses updates too; it is told apart first, one
// call at a time, so that it is not reported as a race.
func caseCASRace(ctx context.Context, s storage.Storage, n *namespaces) error {
	const workers, increments = 16, 50
	ns := n.ns("")
	key := []byte("counter")
	if err := put(ctx, s, ns, key, []byte("0")); err != nil {
		return err
	}
	res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: true, Expected: []byte("1"), Value: []byte("2")})
	if err != nil {
		return fmt.Errorf("compare-and-swap %q expecting \"1\" when \"0\" is there: %w", key, err)
	}
	if res.Swapped {
		return fmt.Errorf("compare-and-swap ignores Expected: it swapped although the current value differs (expected \"1\", the key held \"0\")")
	}
	if err := wantValue(ctx, s, ns, key, []byte("0"), "after a compare-and-swap expecting another value"); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		mu    sync.Mutex
		seen  = make(map[int]int) // value written -> worker that wrote it
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel() })
	}
	for w := range workers {
		wg.Go(func() {
			cur, found, err := s.Get(ctx, ns, key)
			if err != nil || !found {
				fail(fmt.Errorf("worker %d: get counter: found=%v err=%v", w, found, err))
				return
			}
			for range increments {
				for attempt := 0; ; attempt++ {
					if attempt > 100000 {
						fail(fmt.Errorf("worker %d: no compare-and-swap succeeded in 100000 attempts", w))
						return
					}
					v, err := strconv.Atoi(string(cur))
					if err != nil {
						fail(fmt.Errorf("worker %d: counter holds %s, not a number", w, show(cur)))
						return
					}
					next := []byte(strconv.Itoa(v + 1))
					t0 := time.Now()
					res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: true, Expected: cur, Value: next})
					took := time.Since(t0)
					if err != nil {
						fail(fmt.Errorf("worker %d: compare-and-swap %q -> %q: %w", w, cur, next, err))
						return
					}
					if res.Swapped {
						mu.Lock()
						other, dup := seen[v+1]
						seen[v+1] = w
						mu.Unlock()
						if dup {
							fail(fmt.Errorf("workers %d and %d both swapped the counter from %d to %d: compare-and-swap is not atomic", other, w, v, v+1))
							return
						}
						cur = next
						break
					}
					if !res.Present {
						fail(fmt.Errorf("worker %d: compare-and-swap failed and reports the counter absent", w))
						return
					}
					cur = res.Current
					// Back off, as a real client would: without it, 16 writers against a
					// backend that syncs every call make ten failed attempts per success.
					time.Sleep(rand.N(max(took, time.Microsecond) << min(attempt, 4)))
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	want := []byte(strconv.Itoa(workers * increments))
	return wantValue(ctx, s, ns, key, want, fmt.Sprintf("after %d workers each incremented it %d times by compare-and-swap", workers, increments))
}

// caseConcurrentPuts: puts of distinct keys from many goroutines are all kept.
func caseConcurrentPuts(ctx context.Context, s storage.Storage, n *namespaces) error {
	const workers, puts = 16, 25
	ns := n.ns("")
	var (
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for i := range puts {
				k, v := fmt.Appendf(nil, "w%02d/%03d", w, i), fmt.Appendf(nil, "worker %d put %d", w, i)
				if err := put(ctx, s, ns, k, v); err != nil {
					errs[w] = fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	var want []storage.KeyValue
	for w := range workers {
		for i := range puts {
			want = append(want, kv(fmt.Sprintf("w%02d/%03d", w, i), fmt.Sprintf("worker %d put %d", w, i)))
		}
	}
	items, err := scanAll(ctx, s, storage.ScanRequest{Namespace: ns, Limit: 150})
	if err != nil {
		return err
	}
	return wantItems(fmt.Sprintf("scan after %d goroutines each put %d keys", workers, puts), items, want, false)
}
