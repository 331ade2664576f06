package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
)

// principal is whom a request acts for, as its bearer token says (config.Token): an
// operator, who reaches everything, a user, who reaches the sessions it owns, their
// traces, and the shared record (merged traces), or a scraper, who reads GET /metrics
// alone. Without api.token_file every request is an operator's.
//
// Access is decided in one place per kind of resource: sessionFor for a session (and what
// is under it), traceFor for a trace, ownerFilter for listings, and route.Operator for the
// operators' routes. A resource the principal does not reach answers exactly as one that
// does not exist, so that a user learns nothing of others' ids.
type principal struct {
	// user is the user name of the request's token; "" for an operator.
	user string
	// anonymous is a health check without a valid token: it reaches nothing else.
	anonymous bool
	// scraper is a token of api.token_file's metrics role (config.MetricsRole): it
	// reads GET /metrics (see scraperMay), and the health check as anonymous does.
	scraper bool
}

// operator reports whether p reaches everything.
func (p principal) operator() bool { return !p.anonymous && !p.scraper && p.user == "" }

// scraperMay reports whether a scraper's token may make r: read the metrics.
func scraperMay(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/metrics" || r.URL.Path == "/v1/metrics")
}

// owns reports whether p reaches what the user owner owns ("" for the operators').
func (p principal) owns(owner string) bool {
	return p.operator() || p.user != "" && p.user == owner
}

// String names p in log lines: "operator", "anonymous" or "user:NAME" (never a token),
// which no user's line reads like, whatever its name.
func (p principal) String() string {
	switch {
	case p.anonymous:
		return "anonymous"
	case p.scraper:
		return "metrics"
	case p.user == "":
		return "operator"
	}
	return "user:" + p.user
}

// agent is the agent the host records for a provenance entry p appends without naming
// one: "operator" for an operator (every request without api.token_file), "user:NAME" for a
// user. It is not the host's "api", which marks what the host writes on a client's behalf.
func (p principal) agent() string {
	if p.user == "" {
		return "operator"
	}
	return "user:" + p.user
}

type principalKey struct{}

// withPrincipal returns r carrying p, for the handlers to read with principalOf.
func withPrincipal(r *http.Request, p principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// principalOf returns the principal ServeHTTP put in r. A request that did not come
// through ServeHTTP has none, and reaches nothing an operator alone does.
func principalOf(r *http.Request) principal {
	if p, ok := r.Context().Value(principalKey{}).(principal); ok {
		return p
	}
	return principal{anonymous: true}
}

// authenticate returns the principal of r and whether r may use the API: it carries one of
// the configured bearer tokens (its principal is the token's), or there are none (every
// request is an operator's), or it is the health check (for load balancers and probes).
func (s *Server) authenticate(r *http.Request) (principal, bool) {
	if len(*s.tokens.Load()) == 0 {
		return principal{}, true
	}
	p, ok := s.tokenPrincipal(r)
	if (!ok || p.scraper) && (r.Method == http.MethodGet || r.Method == http.MethodHead) && isHealthPath(strings.TrimPrefix(r.URL.Path, "/v1")) {
		return principal{anonymous: true}, true
	}
	return p, ok
}

// repeatedAuthorization says why r is refused for carrying Authorization more than once
// ("" when it does not): the field is a singleton (RFC 9110 §11.6.2), and which of two
// a server reads differs from one to the next (a proxy in front may check the other).
func repeatedAuthorization(r *http.Request) string {
	if len(r.Header.Values("Authorization")) > 1 {
		return "the Authorization header is given more than once; send one"
	}
	return ""
}

// tokenPrincipal returns the principal of r's bearer token, if it is one of the configured
// tokens. Every digest is compared, in constant time, whichever matches.
func (s *Server) tokenPrincipal(r *http.Request) (principal, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return principal{}, false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	tokens := *s.tokens.Load()
	match := -1
	for i, want := range tokens {
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], want.Digest[:]), i, match)
	}
	if match < 0 {
		return principal{}, false
	}
	return principal{user: tokens[match].User, scraper: tokens[match].Metrics}, true
}

// errForbidden is a request the principal may not make, shown as 403 (not one that names
// another's resource: that is a 404, see principal).
type errForbidden struct{ msg string }

func (e *errForbidden) Error() string { return e.msg }

func forbidden(format string, args ...any) error {
	return &errForbidden{msg: fmt.Sprintf(format, args...)}
}

// operatorOnly answers 403 to a principal other than an operator.
func operatorOnly(s *Server, rt route, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		if p.scraper && rt.Scraper {
			next(w, r)
			return
		}
		if !p.operator() {
			s.fail(w, r, forbidden("%s %s needs an operator's token (a line of api.token_file without a user name); this token is user %s's", rt.Method, shownPath(r), p.user))
			return
		}
		next(w, r)
	}
}

// sessionFor returns the session id names if the request's principal reaches it, else
// the error of an id that names no session.
func (s *Server) sessionFor(r *http.Request, id string) (*session.Session, error) {
	sess, err := s.opts.Sessions.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if !principalOf(r).owns(sess.Owner) {
		return nil, session.NotFound(id)
	}
	return sess, nil
}

// reachSession is sessionFor for a handler that reads the session itself (the engine,
// a delete): it answers the error of an unknown id if the request's principal does not
// reach the session, and reads nothing for an operator, who reaches every session, so
// that the handler's own lookup, and the checks the handler makes before it, answer as
// they would without tokens.
func (s *Server) reachSession(r *http.Request, id string) error {
	if principalOf(r).operator() {
		return nil
	}
	_, err := s.sessionFor(r, id)
	return err
}

// activeSessionFor is sessionFor for a session that must be active (not deleted).
func (s *Server) activeSessionFor(r *http.Request, id string) (*session.Session, error) {
	if _, err := s.sessionFor(r, id); err != nil {
		return nil, err
	}
	return s.opts.Sessions.Active(r.Context(), id)
}

// traceFor returns the trace id names if the request's principal reaches it, else the
// error of an id that names no trace. A principal reaches the traces of the sessions it
// owns and, when shared (reading, not writing), every merged trace: the shared record is
// every token holder's to read. A merged trace that the principal may read but not write
// (shared false: an append, a flag, a merge) is a 403, not a 404: it is visibly there.
func (s *Server) traceFor(r *http.Request, id string, shared bool) (trace.Record, error) {
	ctx := r.Context()
	rec, err := s.opts.Traces.Get(ctx, id)
	if errors.Is(err, trace.ErrCorrupt) {
		// A damaged trace is named as such only to whom may read it: to anyone else it is
		// an unknown id, as an intact trace of another user's is.
		if aerr := s.damagedFor(r, id); aerr != nil {
			return trace.Record{}, aerr
		}
		return trace.Record{}, err
	}
	if err != nil {
		return trace.Record{}, err
	}
	p := principalOf(r)
	if p.operator() || shared && rec.Status == trace.StatusMerged {
		return rec, nil
	}
	sess, err := s.opts.Sessions.Get(ctx, rec.SessionID)
	if errors.Is(err, session.ErrNotFound) {
		return trace.Record{}, trace.NotFound(id)
	}
	if err != nil {
		return trace.Record{}, err
	}
	switch {
	case p.owns(sess.Owner):
		return rec, nil
	case rec.Status == trace.StatusMerged && !p.anonymous:
		return trace.Record{}, forbidden("trace %s is in the shared record, which every token may read, but only the trace's owner or an operator may append to, flag or merge it", id)
	}
	return trace.Record{}, trace.NotFound(id)
}

// damagedFor checks that the request's principal may read trace id, whose stored record is
// damaged (so its status is unknown: only its session's owner and the operators reach it),
// and returns the error to answer if not.
func (s *Server) damagedFor(r *http.Request, id string) error {
	p := principalOf(r)
	if p.operator() {
		return nil
	}
	sid, err := s.opts.Traces.SessionOf(r.Context(), id)
	if err != nil {
		return err
	}
	sess, err := s.opts.Sessions.Get(r.Context(), sid)
	if errors.Is(err, session.ErrNotFound) {
		return trace.NotFound(id)
	}
	if err != nil {
		return err
	}
	if !p.owns(sess.Owner) {
		return trace.NotFound(id)
	}
	return nil
}

// tracesFor checks, for the request's principal, every trace ids names, as traceFor
// does, in the order the trace store would look them up (ascending), so that the first
// one it does not reach is the one an unknown id in its place would be.
func (s *Server) tracesFor(r *http.Request, ids []string, shared bool) error {
	if principalOf(r).operator() {
		return nil
	}
	sorted := slices.Compact(slices.Sorted(slices.Values(ids)))
	for _, id := range sorted {
		if _, err := s.traceFor(r, id, shared); err != nil {
			return err
		}
	}
	return nil
}

// ownerFilter is the owner a listing of sessions keeps for the request's principal:
// a user's own, whatever it asks (naming another user is 403); an operator's, those of
// the user the owner query parameter names, or every session when it names none.
func (s *Server) ownerFilter(r *http.Request) (string, error) {
	owner, err := queryOnce(r, "owner")
	if err != nil {
		return "", err
	}
	if owner != "" && !config.ValidUserName(owner) {
		return "", badRequest("query parameter owner %q is not a user name: 1 to %d of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", owner, config.MaxUserNameBytes)
	}
	p := principalOf(r)
	switch {
	case p.operator():
		return owner, nil
	case p.user == "": // anonymous: never here, as only the health check lets it in
		return "", forbidden("listing sessions needs a token")
	case owner != "" && owner != p.user:
		return "", forbidden("a user token lists only its own user's sessions (%s): leave owner out, or use an operator's token", p.user)
	}
	return p.user, nil
}
