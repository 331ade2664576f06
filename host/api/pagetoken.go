package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"

	"github.com/limitgraph/limit/internal/clip"
)

// listingTagLen is how many bytes of a listing's digest its page tokens carry.
const listingTagLen = 6

// listing names a paged listing for its page tokens: the route and what it is filtered by
// ("traces/" + a session id), not the path, so /v1/x and the seed's /x share tokens.
func listingTag(listing string) []byte {
	sum := sha256.Sum256([]byte("limit page token\x00" + listing))
	return sum[:listingTagLen]
}

// pageToken is the next_token the API answers for a store's token inner of listing ("" at
// the end): opaque, and bound to its listing, so that a token used on another listing (a
// session's traces' on another session's, or on /v1/merged, which take the same store
// tokens) is refused instead of giving a page of the wrong list, or an empty one that
// looks like its end.
func pageToken(listing, inner string) string {
	if inner == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(append(listingTag(listing), inner...))
}

// storeToken returns the store's token that r's next_token (from pageToken) holds for
// listing, "" when r has none.
func storeToken(r *http.Request, listing string) (string, error) {
	tok, err := queryOnce(r, "next_token")
	if err != nil || tok == "" {
		return "", err
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) <= listingTagLen {
		return "", badRequest("next_token %q is not one this API gave: pass the next_token of the page before, unchanged", clip.Marked(tok, 60))
	}
	if !bytes.Equal(b[:listingTagLen], listingTag(listing)) {
		return "", badRequest("next_token belongs to another listing: a token continues only the list (route, and session) whose page gave it")
	}
	return string(b[listingTagLen:]), nil
}
