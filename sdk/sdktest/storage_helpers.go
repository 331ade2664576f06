package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// show formats a key or value for an error message, cutting long ones short.
func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:32], len(b))
}

// showKeys formats a list of keys for an error message, cutting long lists short.
func showKeys(items []storage.KeyValue) string {
	var b strings.Builder
	b.WriteString("[")
	for i, kv := range items {
		if i == 20 {
			fmt.Fprintf(&b, " ... %d more", len(items)-i)
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(show(kv.Key))
	}
	b.WriteString("]")
	return b.String()
}

// wantInvalid checks that err wraps storage.ErrInvalid.
func wantInvalid(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: got no error, want one wrapping storage.ErrInvalid", what)
	}
	if !errors.Is(err, storage.ErrInvalid) {
		return fmt.Errorf("%s: got error %q, want one wrapping storage.ErrInvalid", what, err)
	}
	return nil
}

// put writes key=value and wraps a failure with what was written.
func put(ctx context.Context, s storage.Storage, ns string, key, value []byte) error {
	if err := s.Put(ctx, ns, key, value); err != nil {
		return fmt.Errorf("put %s in %q: %w", show(key), ns, err)
	}
	return nil
}

// putAll writes the keys and values of kvs in one batch.
func putAll(ctx context.Context, s storage.Storage, ns string, kvs []storage.KeyValue) error {
	ops := make([]storage.Op, len(kvs))
	for i, kv := range kvs {
		ops[i] = storage.Op{Kind: storage.OpPut, Key: kv.Key, Value: kv.Value}
	}
	if err := s.Batch(ctx, ns, ops); err != nil {
		return fmt.Errorf("batch of %d puts in %q: %w", len(ops), ns, err)
	}
	return nil
}

// wantValue checks that key holds want.
func wantValue(ctx context.Context, s storage.Storage, ns string, key, want []byte, when string) error {
	got, found, err := s.Get(ctx, ns, key)
	if err != nil {
		return fmt.Errorf("get %s %s: %w", show(key), when, err)
	}
	if !found {
		return fmt.Errorf("get %s %s: not found, want %s", show(key), when, show(want))
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("get %s %s: got %s, want %s", show(key), when, show(got), show(want))
	}
	return nil
}

// wantMissing checks that key does not exist.
func wantMissing(ctx context.Context, s storage.Storage, ns string, key []byte, when string) error {
	got, found, err := s.Get(ctx, ns, key)
	if err != nil {
		return fmt.Errorf("get %s %s: %w", show(key), when, err)
	}
	if found {
		return fmt.Errorf("get %s %s: found %s, want not found", show(key), when, show(got))
	}
	if len(got) != 0 {
		return fmt.Errorf("get %s %s: not found but returned value %s, want none", show(key), when, show(got))
	}
	return nil
}

// scanPage runs one scan and wraps a failure with the request.
func scanPage(ctx context.Context, s storage.Storage, req storage.ScanRequest) (storage.ScanResult, error) {
	res, err := s.Scan(ctx, req)
	if err != nil {
		return res, fmt.Errorf("scan %q prefix %s start_after %s limit %d: %w", req.Namespace, show(req.Prefix), show(req.StartAfter), req.Limit, err)
	}
	return res, nil
}

// scanAll pages through a scan, checking that pages make progress and keys ascend.
func scanAll(ctx context.Context, s storage.Storage, req storage.ScanRequest) ([]storage.KeyValue, error) {
	var all []storage.KeyValue
	for page := 0; ; page++ {
		if page > 100000 {
			return nil, fmt.Errorf("scan %q: more than 100000 pages, pagination does not end", req.Namespace)
		}
		res, err := scanPage(ctx, s, req)
		if err != nil {
			return nil, err
		}
		for _, kv := range res.Items {
			if len(all) > 0 && bytes.Compare(kv.Key, all[len(all)-1].Key) <= 0 {
				return nil, fmt.Errorf("scan %q page %d: key %s follows %s, want strictly ascending keys", req.Namespace, page, show(kv.Key), show(all[len(all)-1].Key))
			}
			all = append(all, kv)
		}
		if !res.More {
			return all, nil
		}
		if len(res.Items) == 0 {
			return nil, fmt.Errorf("scan %q page %d: no items but More is true", req.Namespace, page)
		}
		req.StartAfter = res.Items[len(res.Items)-1].Key
	}
}

// wantItems checks that got holds exactly the keys of want, in order, and (unless keysOnly)
// their values; with keysOnly it checks that no values came back.
func wantItems(what string, got, want []storage.KeyValue, keysOnly bool) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: got %d items %s, want %d items %s", what, len(got), showKeys(got), len(want), showKeys(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Key, want[i].Key) {
			return fmt.Errorf("%s: item %d has key %s, want %s (got %s, want %s)", what, i, show(got[i].Key), show(want[i].Key), showKeys(got), showKeys(want))
		}
		if keysOnly {
			if len(got[i].Value) != 0 {
				return fmt.Errorf("%s: keys-only item %s came with value %s, want none", what, show(got[i].Key), show(got[i].Value))
			}
			continue
		}
		if !bytes.Equal(got[i].Value, want[i].Value) {
			return fmt.Errorf("%s: value of %s: got %s, want %s", what, show(got[i].Key), show(got[i].Value), show(want[i].Value))
		}
	}
	return nil
}

// wantPage checks one scan page: its items and its More flag.
func wantPage(what string, res storage.ScanResult, want []storage.KeyValue, more bool) error {
	if err := wantItems(what, res.Items, want, false); err != nil {
		return err
	}
	if res.More != more {
		return fmt.Errorf("%s: More is %v, want %v", what, res.More, more)
	}
	return nil
}

// sorted returns a copy of kvs in ascending byte order of keys: the order a scan must use.
func sorted(kvs []storage.KeyValue) []storage.KeyValue {
	out := slices.Clone(kvs)
	slices.SortFunc(out, func(a, b storage.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

// withPrefix returns the items of kvs whose key has prefix, keeping their order.
func withPrefix(kvs []storage.KeyValue, prefix string) []storage.KeyValue {
	var out []storage.KeyValue
	for _, kv := range kvs {
		if bytes.HasPrefix(kv.Key, []byte(prefix)) {
			out = append(out, kv)
		}
	}
	return out
}

// kv builds an item from strings.
func kv(key, value string) storage.KeyValue {
	return storage.KeyValue{Key: []byte(key), Value: []byte(value)}
}

// keyValues builds items whose values are derived from their keys.
func keyValues(keys ...string) []storage.KeyValue {
	out := make([]storage.KeyValue, len(keys))
	for i, k := range keys {
		out[i] = kv(k, "value of "+k)
	}
	return out
}
