package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
)

// checkQuery refuses a query string rt does not read: a parameter not among rt.Query (any
// parameter, when rt takes none), one given more than once, or a query that does not
// parse (a pair with a ';' the handlers' r.URL.Query() would drop). A misspelled name
// left unread would answer a different question than the one asked (the knee of every
// session for ?session=ID), so it is a 400 naming it and the names the route takes.
//
// The health check is the exception: it reads no parameter, so none can be misread, and
// probes (load balancers, orchestrators) that add their own, such as a cache-buster, must
// not see a healthy host as failing.
func checkQuery(r *http.Request, rt route) error {
	if r.URL.RawQuery == "" || isHealthPath(rt.Path) {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("the query string cannot be read: %v", err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // the same answer for the same query
	for _, name := range names {
		if !slices.Contains(rt.Query, name) {
			return unknownQuery(name, rt)
		}
	}
	for _, name := range names {
		if n := len(q[name]); n > 1 {
			return badRequest("query parameter %s is given %d times; give it once", name, n)
		}
	}
	return nil
}

// unknownQuery is the 400 of a query parameter name rt does not take.
func unknownQuery(name string, rt route) error {
	op := rt.Method + " /v1" + rt.Path
	if len(rt.Query) == 0 {
		return badRequest("unknown query parameter %s: %s takes no query parameters", strconv.Quote(name), op)
	}
	hint := ""
	if meant := closestName(name, rt.Query); meant != "" {
		hint = "; did you mean " + meant + "?"
	}
	return badRequest("unknown query parameter %s%s (%s takes %s)", strconv.Quote(name), hint, op, orList(rt.Query))
}

// closestName returns the name in names nearest to given when it is near enough to be a
// likely typo or a shortening of it (session for session_id), else "".
func closestName(given string, names []string) string {
	given = strings.ToLower(given)
	best, bestDist := "", -1
	for _, n := range names {
		d := levenshtein.Distance(given, n, nil)
		near := d <= max(2, len(n)/3) || (len(given) >= 3 && strings.HasPrefix(n, given))
		if near && (bestDist < 0 || d < bestDist) {
			best, bestDist = n, d
		}
	}
	return best
}

// orList renders names as "a, b or c".
func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
