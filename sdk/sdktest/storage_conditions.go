package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/limitgraph/limit/sdk/storage"
)

// wantCondition checks that err is a failed batch condition naming operation op.
func wantCondition(what string, err error, op int) error {
	var ce *storage.ConditionError
	switch {
	case err == nil:
		return fmt.Errorf("%s: succeeded, want a failed condition", what)
	case !errors.Is(err, storage.ErrConditionFailed):
		return fmt.Errorf("%s: error %v does not wrap storage.ErrConditionFailed", what, err)
	case !errors.As(err, &ce):
		return fmt.Errorf("%s: error %v is not a *storage.ConditionError", what, err)
	case ce.Op != op:
		return fmt.Errorf("%s: condition error names operation %d, want %d", what, ce.Op, op)
	}
	return nil
}

func wantAbsent(ctx context.Context, s storage.Storage, ns, key, what string) error {
	_, ok, err := s.Get(ctx, ns, []byte(key))
	if err != nil {
		return fmt.Errorf("%s: get %q: %w", what, key, err)
	}
	if ok {
		return fmt.Errorf("%s: key %q exists; a failed conditional batch applied part of itself", what, key)
	}
	return nil
}

// caseBatchConditions: assertions are checked against the state before the batch; when one
// fails nothing is applied and the error names it.
func caseBatchConditions(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	put := func(k, v string) storage.Op { return storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v)} }
	absent := func(k string) storage.Op { return storage.Op{Kind: storage.OpAssertAbsent, Key: []byte(k)} }
	value := func(k, v string) storage.Op {
		return storage.Op{Kind: storage.OpAssertValue, Key: []byte(k), Value: []byte(v)}
	}
	if err := s.Put(ctx, ns, []byte("k1"), []byte("v1")); err != nil {
		return err
	}
	if err := s.Put(ctx, ns, []byte("empty"), []byte{}); err != nil {
		return err
	}
	if err := s.Batch(ctx, ns, []storage.Op{value("k1", "v1"), put("k2", "x"), absent("k3"), value("empty", "")}); err != nil {
		return fmt.Errorf("batch whose assertions hold: %w", err)
	}
	if v, ok, err := s.Get(ctx, ns, []byte("k2")); err != nil || !ok || string(v) != "x" {
		return fmt.Errorf("after a batch whose assertions held: k2 = %q, %v, %v", v, ok, err)
	}
	if err := wantCondition("assert-absent on an existing key", s.Batch(ctx, ns, []storage.Op{put("k4", "x"), absent("k1")}), 1); err != nil {
		return err
	}
	if err := wantAbsent(ctx, s, ns, "k4", "after assert-absent failed"); err != nil {
		return err
	}
	if err := wantCondition("assert-value with another value", s.Batch(ctx, ns, []storage.Op{value("k1", "other"), put("k5", "x")}), 0); err != nil {
		return err
	}
	if err := wantCondition("assert-value on a missing key", s.Batch(ctx, ns, []storage.Op{value("nope", ""), put("k5", "x")}), 0); err != nil {
		return err
	}
	if err := wantAbsent(ctx, s, ns, "k5", "after assert-value failed"); err != nil {
		return err
	}
	// Against the state before the batch: a put of k6 before assert-absent k6 holds.
	if err := s.Batch(ctx, ns, []storage.Op{put("k6", "a"), absent("k6")}); err != nil {
		return fmt.Errorf("assert-absent after a put of the same key in the batch (state before the batch): %w", err)
	}
	// An assertion-only batch changes nothing and succeeds.
	if err := s.Batch(ctx, ns, []storage.Op{value("k6", "a")}); err != nil {
		return fmt.Errorf("assertion-only batch: %w", err)
	}
	return nil
}

// caseBatchConditionRace: 16 writers race to claim one key with assert-absent; exactly one
// wins, and the key holds the winner's value.
func caseBatchConditionRace(ctx context.Context, s storage.Storage, n *namespaces) error {
	ns := n.ns("")
	const writers = 16
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Batch(ctx, ns, []storage.Op{
				{Kind: storage.OpAssertAbsent, Key: []byte("slot")},
				{Kind: storage.OpPut, Key: []byte("slot"), Value: []byte(fmt.Sprint("w", i))},
				{Kind: storage.OpPut, Key: []byte(fmt.Sprint("mark", i)), Value: []byte("1")},
			})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				return fmt.Errorf("writers %d and %d both claimed the slot", winner, i)
			}
			winner = i
		case !errors.Is(err, storage.ErrConditionFailed):
			return fmt.Errorf("writer %d: %w", i, err)
		}
	}
	if winner < 0 {
		return errors.New("no writer claimed the slot")
	}
	v, _, err := s.Get(ctx, ns, []byte("slot"))
	if err != nil || !bytes.Equal(v, []byte(fmt.Sprint("w", winner))) {
		return fmt.Errorf("slot holds %q (%v), the winner was w%d", v, err, winner)
	}
	for i := range writers {
		_, ok, err := s.Get(ctx, ns, []byte(fmt.Sprint("mark", i)))
		if err != nil {
			return err
		}
		if ok != (i == winner) {
			return fmt.Errorf("mark%d present=%v, winner w%d: a losing batch applied part of itself", i, ok, winner)
		}
	}
	return nil
}
