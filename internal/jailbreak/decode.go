package jailbreak

import (
	"encoding/base64"
	"encoding/hex"
	"html"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the decoders, so a hostile input cannot make the detector do unbounded work.
const (
	// minEncodedLen is the shortest run taken for base64 or hex (16 chars is 12 or 8
	// decoded bytes: shorter runs are identifiers, not messages).
	minEncodedLen = 16
	// maxPayloads is the most decoded payloads scanned per text.
	maxPayloads = 32
	// maxDecodedBytes caps the decoded bytes scanned per text.
	maxDecodedBytes = 256 << 10
	// maxDecodeDepth is how deep payloads inside payloads are followed.
	maxDecodeDepth = 2
)

// Payload is a piece of text found encoded inside another.
type Payload struct {
	// Encoding is "base64", "hex", "percent", "html-entities", "morse" or "tags".
	Encoding string
	// Start and End are the encoded span in the text it was found in.
	Start, End int
	// Text is the decoded text.
	Text string
}

// FindPayloads returns the decodable, text-like payloads of s: base64 (standard or
// URL-safe, padded or not), hex (plain, space- or \x-separated), percent-encoding, runs
// of numeric HTML character references ("&#105;&#103;…") and Morse code.
// Runs that decode to binary data (images, hashes, keys) are skipped.
func FindPayloads(s string) []Payload {
	var out []Payload
	budget := maxDecodedBytes
	add := func(enc string, start, end int, text string) bool {
		if len(out) >= maxPayloads || budget <= 0 {
			return false
		}
		budget -= len(text)
		out = append(out, Payload{Encoding: enc, Start: start, End: end, Text: text})
		return true
	}
	if strings.Contains(s, ".-") || strings.Contains(s, "-.") {
		for _, p := range findMorse(s) {
			if !add("morse", p.Start, p.End, p.Text) {
				return out
			}
		}
	}
	if strings.Contains(s, "&#") {
		for _, p := range findEntities(s) {
			if !add("html-entities", p.Start, p.End, p.Text) {
				return out
			}
		}
	}
	// A separated-hex or percent run that does not decode to text is not scanned again
	// from a later position inside it: that made long runs ("41 41 41 …") quadratic.
	hexTo, pctTo := 0, 0
	i := 0
	for i < len(s) {
		c := s[i]
		if !isB64(c) && c != '\\' && c != '%' {
			i++
			continue
		}
		// Hex with separators: "69 67 6e" or "\x69\x67".
		if i >= hexTo {
			n, text, scanned := scanSeparatedHex(s[i:])
			if n > 0 {
				if !add("hex", i, i+n, text) {
					return out
				}
				i += n
				continue
			}
			hexTo = i + scanned
		}
		if i >= pctTo && (c == '%' || (i+2 < len(s) && s[i+1] == '%')) {
			n, text, scanned := scanPercent(s[i:])
			if n > 0 {
				if !add("percent", i, i+n, text) {
					return out
				}
				i += n
				continue
			}
			pctTo = i + scanned
		}
		if !isB64(c) {
			i++
			continue
		}
		j := i
		for j < len(s) && isB64(s[j]) {
			j++
		}
		k := j
		for k < len(s) && k-j < 2 && s[k] == '=' {
			k++
		}
		run := s[i:k]
		// s[i:j] is run without its trailing '=' (isB64 excludes '=').
		if j-i >= minEncodedLen && (i == 0 || !isWordByte(s[i-1])) {
			if text, enc, ok := decodeRun(run); ok {
				if !add(enc, i, k, text) {
					return out
				}
			}
		}
		i = k
		if i == j {
			i++
		}
	}
	return out
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

func allB64(b []byte) bool {
	for _, c := range b {
		if !isB64(c) && c != '=' {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool { return c >= 0x80 }

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// decodeRun decodes a run of base64-alphabet characters as hex when it is all hex
// digits, else as base64, and keeps it when the result is text.
func decodeRun(run string) (string, string, bool) {
	return decodeRunDepth(run, 0)
}

func decodeRunDepth(run string, depth int) (string, string, bool) {
	allHex := true
	for i := 0; i < len(run); i++ {
		if !isHex(run[i]) {
			allHex = false
			break
		}
	}
	if allHex && len(run)%2 == 0 {
		if b, err := hex.DecodeString(run); err == nil && textLike(b) {
			return string(b), "hex", true
		}
	}
	trimmed := strings.TrimRight(run, "=")
	encs := []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding}
	for _, enc := range encs {
		// A run may end in a partial quantum when it was cut from a longer text; drop it.
		t := trimmed
		if len(t)%4 == 1 {
			t = t[:len(t)-1]
		}
		b, err := enc.DecodeString(t)
		if err != nil {
			continue
		}
		if textLike(b) {
			return string(b), "base64", true
		}
		// Base64 of another encoding (hex, base64 again): one level deeper.
		if depth+1 < maxDecodeDepth && len(b) >= minEncodedLen && allB64(b) {
			if text, inner, ok := decodeRunDepth(string(b), depth+1); ok {
				return text, "base64+" + inner, true
			}
		}
	}
	return "", "", false
}

// textLike reports whether b reads as text: valid UTF-8, at least 8 bytes, nearly all
// printable, with letters and at least one space (a message, not an identifier).
func textLike(b []byte) bool {
	if len(b) < 8 || !utf8.Valid(b) {
		return false
	}
	var printable, letters, spaces, total int
	for _, r := range string(b) {
		total++
		switch {
		case r == ' ' || r == '\n' || r == '\t':
			spaces++
			printable++
		case unicode.IsLetter(r):
			letters++
			printable++
		case unicode.IsPrint(r):
			printable++
		}
	}
	return printable*100 >= total*95 && letters*2 >= total && spaces >= 1
}

// scanSeparatedHex recognises at least 8 hex byte pairs each followed by one separator
// (space, comma, colon) or each preceded by `\x` or `0x`. scanned is how far the pairs
// went, whether or not they decoded to text.
func scanSeparatedHex(s string) (n int, text string, scanned int) {
	var b []byte
	i := 0
	for {
		j := i
		if j+1 < len(s) && (s[j] == '\\' || s[j] == '0') && (s[j+1] == 'x' || s[j+1] == 'X') {
			j += 2
		} else if len(b) == 0 && s[0] == '\\' {
			return 0, "", 0
		}
		if j+1 >= len(s) || !isHex(s[j]) || !isHex(s[j+1]) || (j+2 < len(s) && isHex(s[j+2])) {
			break
		}
		v, _ := hex.DecodeString(s[j : j+2])
		b = append(b, v[0])
		j += 2
		i = j
		if i < len(s) && (s[i] == ' ' || s[i] == ',' || s[i] == ':') {
			if i+1 < len(s) && s[i] == ',' && s[i+1] == ' ' {
				i++
			}
			i++
		}
	}
	if len(b) < 8 || !textLike(b) {
		return 0, "", i
	}
	end := i
	for end > 0 && (s[end-1] == ' ' || s[end-1] == ',' || s[end-1] == ':') {
		end--
	}
	return end, string(b), i
}

// scanPercent recognises a run with at least four %XX escapes. scanned is the length of
// the run, whether or not it decoded to text.
func scanPercent(s string) (n int, text string, scanned int) {
	i, escapes := 0, 0
	for i < len(s) {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			escapes++
			i += 3
			continue
		}
		if s[i] > ' ' && s[i] < 0x7f && s[i] != '"' && s[i] != '\'' && s[i] != '<' && s[i] != '>' {
			i++
			continue
		}
		break
	}
	if escapes < 4 {
		return 0, "", i
	}
	text, err := url.PathUnescape(s[:i])
	if err != nil || !textLike([]byte(text)) {
		return 0, "", i
	}
	return i, text, i
}

// minMorseCodes is the fewest letters a run of dots and dashes must spell to be taken
// for a Morse message (an ellipsis, a rule of dashes or a Markdown table spells a few).
const minMorseCodes = 12

// morseCode maps the International Morse Code to lower-case letters, digits and
// punctuation.
var morseCode = map[string]byte{
	".-": 'a', "-...": 'b', "-.-.": 'c', "-..": 'd', ".": 'e', "..-.": 'f', "--.": 'g', "....": 'h',
	"..": 'i', ".---": 'j', "-.-": 'k', ".-..": 'l', "--": 'm', "-.": 'n', "---": 'o', ".--.": 'p',
	"--.-": 'q', ".-.": 'r', "...": 's', "-": 't', "..-": 'u', "...-": 'v', ".--": 'w', "-..-": 'x',
	"-.--": 'y', "--..": 'z',
	"-----": '0', ".----": '1', "..---": '2', "...--": '3', "....-": '4', ".....": '5', "-....": '6',
	"--...": '7', "---..": '8', "----.": '9',
	".-.-.-": '.', "--..--": ',', "..--..": '?', ".----.": '\'', "-.-.--": '!', "-..-.": '/',
	"-.--.": '(', "-.--.-": ')', "---...": ':', "-.-.-.": ';', "-...-": '=', ".-.-.": '+',
	"-....-": '-', ".-..-.": '"', ".--.-.": '@',
}

// findMorse returns the Morse messages of s: runs of dots and dashes, letters separated
// by a space and words by '/', '|' or more than one space, that spell at least
// minMorseCodes known codes (an unknown code is read as '?'; a run with more unknown
// codes than one in ten is no message).
func findMorse(s string) []Payload {
	var out []Payload
	i := 0
	for i < len(s) {
		if s[i] != '.' && s[i] != '-' {
			i++
			continue
		}
		j := i
		for j < len(s) && (s[j] == '.' || s[j] == '-' || s[j] == ' ' || s[j] == '/' || s[j] == '|' || s[j] == '\t' || s[j] == '\n') {
			j++
		}
		end := j
		for end > i && s[end-1] != '.' && s[end-1] != '-' {
			end--
		}
		if text, ok := decodeMorse(s[i:end]); ok {
			out = append(out, Payload{Encoding: "morse", Start: i, End: end, Text: text})
		}
		i = j
	}
	return out
}

func decodeMorse(run string) (string, bool) {
	var b strings.Builder
	codes, unknown, gap, ndistinct := 0, 0, 0, 0
	var distinct [256]bool
	k := 0
	for k < len(run) && b.Len() < maxDecodedBytes {
		c := run[k]
		if c == '.' || c == '-' {
			e := k
			for e < len(run) && (run[e] == '.' || run[e] == '-') {
				e++
			}
			if gap > 0 && b.Len() > 0 {
				b.WriteByte(' ')
			}
			gap = 0
			ch, ok := morseCode[run[k:e]]
			if !ok {
				ch = '?'
				unknown++
			}
			b.WriteByte(ch)
			if !distinct[ch] {
				distinct[ch] = true
				ndistinct++
			}
			codes++
			k = e
			continue
		}
		// A separator: one space between letters, anything more between words.
		e := k
		for e < len(run) && run[e] != '.' && run[e] != '-' {
			e++
		}
		if e-k > 1 || c != ' ' {
			gap = 1
		}
		k = e
	}
	if codes < minMorseCodes || unknown*10 > codes || ndistinct < 4 {
		return "", false
	}
	return b.String(), true
}

// minEntities is the fewest numeric character references a run needs to be decoded: a
// page's occasional "&#8217;" is not an encoding of its text.
const minEntities = 6

// findEntities returns the runs of s written mostly in numeric HTML character references
// ("&#73;&#103;&#x6e;…", a letter or a space between them allowed), decoded: at least
// minEntities references, and more references than other characters.
func findEntities(s string) []Payload {
	var out []Payload
	for i := 0; i < len(s); {
		k := strings.Index(s[i:], "&#")
		if k < 0 {
			break
		}
		start := i + k
		j, refs, lits, end := start, 0, 0, start
		for j < len(s) {
			if n := entityLen(s[j:]); n > 0 {
				refs++
				j += n
				end = j
				continue
			}
			c := s[j]
			if c == '&' || c == '<' || c == '\n' || c >= 0x80 || j-end >= 2 {
				break
			}
			lits++
			j++
		}
		lits -= j - end // literals after the last reference are not part of the run
		if refs >= minEntities && refs > lits {
			out = append(out, Payload{Start: start, End: end, Text: html.UnescapeString(s[start:end])})
			if len(out) >= maxPayloads {
				break
			}
		}
		i = max(end, start+2)
	}
	return out
}

// entityLen returns the length of the numeric character reference s starts with
// ("&#105;", "&#x69;"), or 0.
func entityLen(s string) int {
	if len(s) < 4 || s[0] != '&' || s[1] != '#' {
		return 0
	}
	j, hexa := 2, false
	if s[j] == 'x' || s[j] == 'X' {
		j, hexa = 3, true
	}
	digits := 0
	for j < len(s) && digits < 8 {
		c := s[j]
		if c >= '0' && c <= '9' || hexa && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			j++
			digits++
			continue
		}
		break
	}
	if digits == 0 || j >= len(s) || s[j] != ';' {
		return 0
	}
	return j + 1
}
