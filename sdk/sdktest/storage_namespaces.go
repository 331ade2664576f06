package sdktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// caseBatchNamespaces: a backend that declares storage.CapBatchNamespaces applies ops in
// other namespaces (storage.Op.Namespace) atomically with the rest of the batch, checks
// their assertions in their own namespace, and keeps the same key in two namespaces
// apart. A backend that does not declare it is never sent such ops (the host's client
// refuses them), so the case only checks that a plugin client refuses them.
func caseBatchNamespaces(ctx context.Context, s storage.Storage, n *namespaces) error {
	a, b, c := n.ns(""), n.ns("b"), n.ns("c")
	put := func(ns, k, v string) storage.Op {
		return storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v), Namespace: ns}
	}
	del := func(ns, k string) storage.Op {
		return storage.Op{Kind: storage.OpDelete, Key: []byte(k), Namespace: ns}
	}
	absent := func(ns, k string) storage.Op {
		return storage.Op{Kind: storage.OpAssertAbsent, Key: []byte(k), Namespace: ns}
	}
	value := func(ns, k, v string) storage.Op {
		return storage.Op{Kind: storage.OpAssertValue, Key: []byte(k), Value: []byte(v), Namespace: ns}
	}
	want := func(what, ns, k, v string) error {
		got, ok, err := s.Get(ctx, ns, []byte(k))
		switch {
		case err != nil:
			return fmt.Errorf("%s: get %q in %q: %w", what, k, ns, err)
		case v == "" && ok:
			return fmt.Errorf("%s: %q exists in %q (value %q), want it absent", what, k, ns, got)
		case v != "" && (!ok || string(got) != v):
			return fmt.Errorf("%s: %q in %q = %q (present %v), want %q", what, k, ns, got, ok, v)
		}
		return nil
	}
	if !slices.Contains(s.PluginInfo().Capabilities, storage.CapBatchNamespaces) {
		err := s.Batch(ctx, a, []storage.Op{put("", "k", "v"), put(b, "k", "v")})
		if _, remote := s.(interface {
			BatchNamespaces(context.Context) (bool, error)
		}); remote && !errors.Is(err, storage.ErrInvalid) {
			return fmt.Errorf("a batch with ops in another namespace, to a plugin without %s: %v, want ErrInvalid", storage.CapBatchNamespaces, err)
		}
		return nil
	}
	// Puts in two namespaces; the same key in each stays apart; "" and the batch's own
	// name both mean the batch's namespace.
	if err := s.Batch(ctx, a, []storage.Op{put("", "k", "in-a"), put(b, "k", "in-b"), put(a, "a1", "1"), put(b, "b1", "1")}); err != nil {
		return fmt.Errorf("batch over two namespaces: %w", err)
	}
	for _, w := range [][3]string{{a, "k", "in-a"}, {b, "k", "in-b"}, {a, "a1", "1"}, {b, "b1", "1"}, {a, "b1", ""}, {b, "a1", ""}} {
		if err := want("after a batch over two namespaces", w[0], w[1], w[2]); err != nil {
			return err
		}
	}
	// An assertion is checked in its own namespace: b1 exists in b, not in a.
	if err := wantCondition("assert-absent of a key another namespace holds", s.Batch(ctx, a, []storage.Op{put("", "a2", "x"), put(c, "c1", "x"), absent(b, "b1")}), 2); err != nil {
		return err
	}
	for _, w := range [][2]string{{a, "a2"}, {c, "c1"}} {
		if err := want("after a failed assertion in another namespace", w[0], w[1], ""); err != nil {
			return err
		}
	}
	if err := s.Batch(ctx, a, []storage.Op{absent("", "b1"), value(b, "b1", "1"), del(b, "k"), put(c, "c1", "x"), del("", "a1")}); err != nil {
		return fmt.Errorf("batch whose assertions in two namespaces hold: %w", err)
	}
	for _, w := range [][3]string{{b, "k", ""}, {a, "k", "in-a"}, {c, "c1", "x"}, {a, "a1", ""}, {b, "b1", "1"}} {
		if err := want("after deletes and puts over three namespaces", w[0], w[1], w[2]); err != nil {
			return err
		}
	}
	// A delete in a namespace that holds nothing.
	if err := s.Batch(ctx, a, []storage.Op{del(n.ns("empty"), "nothing"), put("", "a3", "x")}); err != nil {
		return fmt.Errorf("delete in an empty namespace beside a put: %w", err)
	}
	// An op in an invalid namespace fails the whole batch.
	err := s.Batch(ctx, a, []storage.Op{put("", "a4", "x"), put(strings.Repeat("n", storage.MaxNamespaceSize+1), "k", "x")})
	if !errors.Is(err, storage.ErrInvalid) {
		return fmt.Errorf("an op in a namespace over the size limit: %v, want ErrInvalid", err)
	}
	return want("after a batch refused for an op's namespace", a, "a4", "")
}
