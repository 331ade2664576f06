package rd

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// InputError reports bad input: Field names the offending argument (c1, c2, m, p, q,
// alpha, epsilon, points, ...) in the spelling the HTTP API uses, Msg says what is wrong
// with it. Callers map it to a client error (HTTP 400) with errors.As.
type InputError struct {
	Field string
	Msg   string
}

// Error implements error.
func (e *InputError) Error() string { return e.Field + ": " + e.Msg }

// ErrNoKnee is returned, wrapped with the reason, when a curve has no knee: it is flat,
// it does not bend the way its shape says, or (Kneedle) it bends less sharply than the
// sensitivity asks. Test for it with errors.Is.
var ErrNoKnee = errors.New("no knee")

// PrecisionError reports an FGW problem whose feature cost is lost to float64 rounding
// beside its structure term: the feature term can change the loss by at most
// Feature = (1−α)·(max M − min M), the structure term is of the order of
// Structure = α·max(C1, C2)², and the rounding of the structure term's gradient (a few
// (n+m) units of float64's 2⁻⁵³ relative to Structure) would be as large as the whole
// feature term. The solvers would then choose the plan as if M were constant and report
// it as converged. Callers map it to a client error (HTTP 422) with errors.As.
type PrecisionError struct {
	// Feature and Structure are the two scales above; Ratio is Feature/Structure and
	// MinRatio the smallest ratio accepted for this problem's size.
	Feature, Structure, Ratio, MinRatio float64
}

// Error implements error.
func (e *PrecisionError) Error() string {
	return fmt.Sprintf("m: the feature term varies by at most %.3g ((1−alpha)·(max m − min m)) against a structure term of scale %.3g (alpha·max(c1, c2)²): a ratio of %.3g, below %.3g, so float64 rounding of the structure term would swallow the feature cost; express c1, c2 and m in units of comparable size, or set alpha to 1 if the features do not matter",
		e.Feature, e.Structure, e.Ratio, e.MinRatio)
}

func inputErr(field, msg string) error { return &InputError{Field: field, Msg: msg} }

func inputErrf(field, format string, args ...any) error {
	return &InputError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// weightTol is how far from 1 a weight vector may sum.
const weightTol = 1e-9

// checkMarginal checks that w is non-negative and finite, and, when want ≥ 0, that it
// sums to want within weightTol.
func checkMarginal(field string, w []float64, want float64) error {
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return inputErrf(field, "entry %d is %v: weights must be finite", i, v)
		}
		if v < 0 {
			return inputErrf(field, "entry %d is %v: weights must be non-negative", i, v)
		}
	}
	if want >= 0 {
		if s := floatsSum(w); math.Abs(s-want) > weightTol {
			return inputErrf(field, "weights sum to %.17g, want %g (within %g)", s, want, weightTol)
		}
	}
	return nil
}

// checkMatrix checks that a is present, has the given shape (a negative dimension means
// any) and holds only finite non-negative entries.
func checkMatrix(field string, a *mat.Dense, rows, cols int, what string) error {
	if a == nil || a.IsEmpty() {
		return inputErr(field, "matrix is missing")
	}
	r, c := a.Dims()
	if (rows >= 0 && r != rows) || (cols >= 0 && c != cols) {
		wr, wc := fmt.Sprint(rows), fmt.Sprint(cols)
		if rows < 0 {
			wr = "any"
		}
		if cols < 0 {
			wc = "any"
		}
		return inputErrf(field, "shape %d×%d, want %s×%s (%s)", r, c, wr, wc, what)
	}
	for i := 0; i < r; i++ {
		for j, v := range a.RawRowView(i) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return inputErrf(field, "entry [%d][%d] is %v: entries must be finite", i, j, v)
			}
			if v < 0 {
				return inputErrf(field, "entry [%d][%d] is %v: entries must be non-negative", i, j, v)
			}
			if v > MaxMagnitude {
				return inputErrf(field, "entry [%d][%d] is %v: entries above %g overflow the solver's squares and sums; scale the matrix down", i, j, v, MaxMagnitude)
			}
		}
	}
	return nil
}

// MaxMagnitude bounds every number the RD core takes: squared and summed over the largest
// graphs the API allows, it stays far from float64's overflow.
const MaxMagnitude = 1e100

// checkSquare checks that a is a square structure matrix.
func checkSquare(field string, a *mat.Dense) error {
	if a == nil || a.IsEmpty() {
		return inputErr(field, "matrix is missing")
	}
	r, c := a.Dims()
	if r != c {
		return inputErrf(field, "not square (%d×%d): a structure matrix is n×n", r, c)
	}
	return checkMatrix(field, a, r, r, "square")
}

func floatsSum(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t
}

// denseData returns the row-major entries of a, copying only when a is a view with a
// stride wider than its columns.
func denseData(a *mat.Dense) []float64 {
	raw := a.RawMatrix()
	if raw.Stride == raw.Cols {
		return raw.Data[:raw.Rows*raw.Cols]
	}
	out := make([]float64, 0, raw.Rows*raw.Cols)
	for i := 0; i < raw.Rows; i++ {
		out = append(out, raw.Data[i*raw.Stride:i*raw.Stride+raw.Cols]...)
	}
	return out
}
