package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	ossestream "github.com/openai/openai-go/v3/packages/ssestream"
)

// failKind sorts the ways an attempt fails.
type failKind int

const (
	failRateLimit failKind = iota + 1 // HTTP 429
	failServer                        // HTTP 408, 409, 5xx, 529
	failAuth                          // HTTP 401, 403
	failRequest                       // other HTTP 4xx
	failTimeout                       // the attempt's timeout
	failNetwork                       // no connection, connection broken
	failMalformed                     // an answer that is not in the provider's format
)

// attemptError is one failed attempt at one model, in words for the user.
type attemptError struct {
	target target
	kind   failKind
	status int
	// retryAfter is the wait the provider asked for; 0 when it asked for none.
	retryAfter time.Duration
	detail     string
	timeout    time.Duration // the attempt timeout, for failTimeout
	// broken is a failNetwork on a connection that was made and then reset or closed.
	broken bool
	// inStream is an error event in a stream that began with HTTP 200: status is 0.
	inStream bool
}

// retryable tells whether the same model may answer if asked again.
func (e *attemptError) retryable() bool {
	switch e.kind {
	case failRateLimit, failServer, failTimeout, failNetwork:
		return true
	}
	return false
}

// Error says what went wrong, naming the model (never the key), with the provider's own
// explanation when it gave one.
func (e *attemptError) Error() string {
	http := func(what string) string {
		if e.inStream {
			return fmt.Sprintf("%s (in the stream: %s)", what, e.detail)
		}
		if e.detail == "" {
			return fmt.Sprintf("%s (HTTP %d)", what, e.status)
		}
		return fmt.Sprintf("%s (HTTP %d: %s)", what, e.status, e.detail)
	}
	var what string
	switch e.kind {
	case failRateLimit:
		what = http("rate limited")
	case failServer:
		what = http("provider error")
	case failAuth:
		what = http("API key refused") + "; check api_key"
	case failRequest:
		what = http("request refused")
	case failTimeout:
		what = fmt.Sprintf("no complete answer within attempt_timeout (%v)", e.timeout)
	case failNetwork:
		what = "cannot reach " + redactURL(e.target.BaseURL) + ": " + e.detail
		if e.broken {
			what = "the connection to " + redactURL(e.target.BaseURL) + " broke: " + e.detail
		}
	case failMalformed:
		what = "its answer could not be read (not the provider's format): " + e.detail
	}
	return e.target.String() + ": " + what
}

// classify turns an SDK error into an attemptError. It is only called when the
// execution itself is still running: a cancelled or timed-out execution is handled by
// the caller.
func classify(t target, err error, attemptTimeout time.Duration, attemptCtx context.Context, red redactor) *attemptError {
	ae := &attemptError{target: t}
	var oe *openai.Error
	var ane *anthropic.Error
	var me *malformedError
	var re *redirectError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ne net.Error
	var ose *ossestream.StreamError
	switch {
	case errors.As(err, &ane) && ane.StatusCode == http.StatusOK:
		// An error event in the stream of an answer that began with 200.
		ae.inStream, ae.kind = true, streamErrorKind(string(ane.Type()))
		ae.detail = providerMessage(ane.Message, ane.RawJSON(), red)
		return ae
	case errors.As(err, &ose):
		var ev struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		_ = json.Unmarshal(ose.Event.Data, &ev)
		ae.inStream, ae.kind = true, streamErrorKind(ev.Error.Type)
		ae.detail = providerMessage(ev.Error.Message, string(ose.Event.Data), red)
		return ae
	case errors.As(err, &oe):
		ae.status, ae.detail = oe.StatusCode, providerMessage(oe.Message, oe.RawJSON(), red)
		ae.retryAfter = retryAfter(oe.Response)
	case errors.As(err, &ane):
		ae.status, ae.detail = ane.StatusCode, providerMessage(ane.Message, ane.RawJSON(), red)
		ae.retryAfter = retryAfter(ane.Response)
	case errors.As(err, &re):
		ae.kind, ae.status, ae.detail = failRequest, re.status, providerMessage(re.Error(), "", red)
		return ae
	case errors.Is(attemptCtx.Err(), context.DeadlineExceeded):
		ae.kind, ae.timeout = failTimeout, attemptTimeout
		return ae
	case errors.As(err, &me):
		ae.kind, ae.detail = failMalformed, me.what
		return ae
	case errors.As(err, &se), errors.As(err, &te), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "unexpected end of JSON input"), strings.Contains(err.Error(), "invalid character"):
		ae.kind, ae.detail = failMalformed, err.Error()
		return ae
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.As(err, &ne):
		ae.kind, ae.detail = failNetwork, causeOf(err)
		ae.broken = errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF)
		return ae
	default:
		// Anything else the SDKs report is about the exchange itself: the answer did
		// not make sense (a stream's broken event, an unexpected content type).
		ae.kind, ae.detail = failMalformed, err.Error()
		return ae
	}
	switch s := ae.status; {
	case s == http.StatusTooManyRequests:
		ae.kind = failRateLimit
	case s == http.StatusRequestTimeout, s == http.StatusConflict, s >= 500:
		ae.kind = failServer
	case s == http.StatusUnauthorized, s == http.StatusForbidden:
		ae.kind = failAuth
	default:
		ae.kind = failRequest
	}
	return ae
}

// streamErrorKind sorts an error event in a stream by its type: the provider's own
// failures (OpenAI's server_error, Anthropic's api_error and overloaded_error) and
// types it does not document are like a 5xx.
func streamErrorKind(typ string) failKind {
	switch typ {
	case "rate_limit_error", "rate_limit_exceeded":
		return failRateLimit
	case "authentication_error", "permission_error":
		return failAuth
	case "invalid_request_error", "not_found_error", "request_too_large", "billing_error":
		return failRequest
	}
	return failServer
}

// providerMessage is the provider's own explanation, or its raw error body when the body
// has no message, without secrets and cut to 300 bytes. Secrets go first: a cut through
// one would leave a part that the redactor no longer knows.
func providerMessage(msg, raw string, red redactor) string {
	if msg == "" {
		msg = strings.TrimSpace(raw)
	}
	msg = red.clean(msg)
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	return msg
}

// causeOf returns the innermost error's text: "connection refused" rather than the whole
// chain with the request line.
func causeOf(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// retryAfter reads the wait a response asks for: retry-after-ms (OpenAI), then
// Retry-After as seconds or an HTTP date. 0 means none.
func retryAfter(res *http.Response) time.Duration {
	if res == nil {
		return 0
	}
	if v := res.Header.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := res.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 || s > 1e6 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// backoff is the computed wait before retry n (1 for the first): base·2^(n-1), capped,
// with up to 20% jitter taken off so that clients do not retry in step.
func backoff(n int, base, maxWait time.Duration) time.Duration {
	d := float64(base) * math.Pow(2, float64(n-1))
	if d > float64(maxWait) {
		d = float64(maxWait)
	}
	return time.Duration(d * (1 - 0.2*rand.Float64()))
}
