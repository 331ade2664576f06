package rd

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// countingCtx is a context whose Err reports Canceled from its limit-th call on.
type countingCtx struct {
	context.Context
	calls, limit int
}

func (c *countingCtx) Err() error {
	c.calls++
	if c.calls >= c.limit {
		return context.Canceled
	}
	return nil
}

// TestGemmRows: the product made a block of rows at a time is the product made at once,
// bit for bit, and a context done between two blocks stops it there, with its error,
// the rows after left unwritten.
func TestGemmRows(t *testing.T) {
	defer func(v int) { gemmRowFlops = v }(gemmRowFlops)
	r, c, k := 150, 70, 90
	gemmRowFlops = 2 * c * k * 16 // blocks of 16 rows
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := make([]float64, r*k), make([]float64, k*c)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	for i := range b {
		b[i] = rng.NormFloat64()
	}
	want, got := make([]float64, r*c), make([]float64, r*c)
	gemm(false, r, c, k, a, b, 0, want)
	ctx := &countingCtx{Context: context.Background(), limit: 1 << 30}
	if err := gemmRows(ctx, r, c, k, a, b, got); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("element %d: %v by blocks, %v at once", i, got[i], want[i])
		}
	}
	if ctx.calls != 10 {
		t.Errorf("the context was read %d times for 10 blocks", ctx.calls)
	}

	clear(got)
	ctx = &countingCtx{Context: context.Background(), limit: 3}
	if err := gemmRows(ctx, r, c, k, a, b, got); !errors.Is(err, context.Canceled) {
		t.Fatalf("a context done before the third block: %v", err)
	}
	if got[2*16*c-1] != want[2*16*c-1] || got[2*16*c] != 0 || got[r*c-1] != 0 {
		t.Errorf("the first two blocks must be written and no more")
	}
}
