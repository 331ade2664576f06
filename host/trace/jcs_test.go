package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestCanonicalizeRFC8785 checks the examples of RFC 8785 (sections 3.2.2-3.2.4) and the
// cases of its reference implementation's test suite.
func TestCanonicalizeRFC8785(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "rfc 3.2.2 values",
			in: `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			name: "rfc 3.2.3 sorting by utf-16 code units",
			in: `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			want: "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{
			name: "arrays",
			in:   "[\n  56,\n  {\n    \"d\": true,\n    \"10\": null,\n    \"1\": [ ]\n  }\n]",
			want: `[56,{"1":[],"10":null,"d":true}]`,
		},
		{
			name: "structures",
			in:   `{"1": {"f": {"f": "hi","F": 5} ,"\n": 56.0}, "10": { }, "": "empty", "a": { }, "111": [ {"e": "yes","E": "no" } ], "A": { }}`,
			want: `{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{"E":"no","e":"yes"}],"A":{},"a":{}}`,
		},
		{
			name: "french: no locale",
			in:   `{"peach": "This sorting order", "péché": "is wrong according to French", "pêche": "but canonicalization MUST", "sin":   "ignore locale"}`,
			want: `{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ignore locale"}`,
		},
		{
			name: "unicode is not normalized",
			in:   `{"Unnormalized Unicode":"A\u030a"}`,
			want: "{\"Unnormalized Unicode\":\"A\u030a\"}",
		},
		{
			name: "weird",
			in:   `{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\u000a": "Newline", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley", "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}`,
			want: "{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u0080\":\"Control\u007f\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😂\":\"Smiley\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{name: "top-level literal", in: " true ", want: "true"},
		{name: "top-level string", in: `  "this is a test string 1235"`, want: `"this is a test string 1235"`},
		{name: "escapes of controls", in: `"\b\f\n\r\t\u0001\u001f\u0020"`, want: `"\b\f\n\r\t\u0001\u001f "`},
		{name: "u+2028 stays raw", in: `"\u2028\u2029"`, want: "\"\u2028\u2029\""},
		{name: "raw utf-8 kept", in: "\"h\u00e9llo \U0001F600\"", want: "\"h\u00e9llo \U0001F600\""},
		{name: "surrogate pair vs private use", in: `{"\ue000":1,"\ud800\udc00":2}`, want: "{\"\U00010000\":2,\"\ue000\":1}"},
		{name: "negative zero", in: `-0.0`, want: `0`},
		{name: "exponent forms", in: `[1e2,1E+2,100e-0,0.1e1,-1.5e-7,1e21,1e-6]`, want: `[100,100,100,1,-1.5e-7,1e+21,0.000001]`},
		{name: "underflow is zero", in: `1e-400`, want: `0`},
		{name: "big integer rounds like a double", in: `12345678901234567890`, want: `12345678901234567000`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Canonicalize:\n got %s\nwant %s", got, tc.want)
			}
			again, err := Canonicalize(got)
			if err != nil || string(again) != string(got) {
				t.Fatalf("canonical form is not a fixed point: %s, %v", again, err)
			}
		})
	}
}

// TestFormatNumberRFC8785 checks the number examples of RFC 8785 appendix B.
func TestFormatNumberRFC8785(t *testing.T) {
	tests := []struct{ hex, want string }{
		{"0000000000000000", "0"},
		{"8000000000000000", "0"},
		{"0000000000000001", "5e-324"},
		{"8000000000000001", "-5e-324"},
		{"7fefffffffffffff", "1.7976931348623157e+308"},
		{"ffefffffffffffff", "-1.7976931348623157e+308"},
		{"4340000000000000", "9007199254740992"},
		{"c340000000000000", "-9007199254740992"},
		{"4430000000000000", "295147905179352830000"},
		{"44b52d02c7e14af5", "9.999999999999997e+22"},
		{"44b52d02c7e14af6", "1e+23"},
		{"44b52d02c7e14af7", "1.0000000000000001e+23"},
		{"444b1ae4d6e2ef4e", "999999999999999700000"},
		{"444b1ae4d6e2ef4f", "999999999999999900000"},
		{"444b1ae4d6e2ef50", "1e+21"},
		{"3eb0c6f7a0b5ed8c", "9.999999999999997e-7"},
		{"3eb0c6f7a0b5ed8d", "0.000001"},
		{"41b3de4355555553", "333333333.3333332"},
		{"41b3de4355555554", "333333333.33333325"},
		{"41b3de4355555555", "333333333.3333333"},
		{"41b3de4355555556", "333333333.3333334"},
		{"41b3de4355555557", "333333333.33333343"},
		{"becbf647612f3696", "-0.0000033333333333333333"},
		{"43143ff3c1cb0959", "1424953923781206.2"},
	}
	for _, tc := range tests {
		checkNumber(t, tc.hex, tc.want)
	}
	for _, hex := range []string{"7fffffffffffffff", "7ff0000000000000", "fff0000000000000"} {
		bits, _ := strconv.ParseUint(hex, 16, 64)
		if s, err := formatNumber(math.Float64frombits(bits)); err == nil {
			t.Errorf("formatNumber(%s) = %q, want an error (NaN or infinity)", hex, s)
		}
	}
}

// TestFormatNumberECMAScript compares with testdata/es6_numbers.txt: 9,000 doubles (random
// bit patterns, short decimals, powers of ten and their neighbours, integers up to 2^53)
// serialized by node's JSON.stringify; testdata/gen_es6_numbers.js regenerates it.
func TestFormatNumberECMAScript(t *testing.T) {
	f, err := os.Open("testdata/es6_numbers.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		hex, want, ok := strings.Cut(sc.Text(), ",")
		if !ok {
			t.Fatalf("line %d: no comma", n+1)
		}
		checkNumber(t, hex, want)
		// The same through the parser: the ECMAScript text must read back unchanged.
		if got, err := Canonicalize([]byte(want)); err != nil || string(got) != want {
			t.Errorf("Canonicalize(%s) = %s, %v", want, got, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 9000 {
		t.Fatalf("read %d vectors, want at least 9000", n)
	}
}

func checkNumber(t *testing.T, hex, want string) {
	t.Helper()
	bits, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("bad vector %q: %v", hex, err)
	}
	got, err := formatNumber(math.Float64frombits(bits))
	if err != nil || got != want {
		t.Errorf("formatNumber(%s) = %q, %v; want %q", hex, got, err, want)
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", ``, "unexpected end"},
		{"trailing data", `{} {}`, "after the JSON value"},
		{"duplicate names", `{"a":1,"b":2,"a":3}`, "duplicate member name"},
		{"duplicate after unescaping", `{"a":1,"\u0061":2}`, "duplicate member name"},
		{"lone high surrogate", `"\ud800"`, "lone surrogate"},
		{"lone low surrogate", `"\udc00x"`, "lone surrogate"},
		{"high then non-low", `"\ud800\u0041"`, "not a low surrogate"},
		{"invalid utf-8", "\"\xff\"", "invalid UTF-8"},
		{"utf-8 encoded surrogate", "\"\xed\xa0\x80\"", "invalid UTF-8"},
		{"raw control", "\"a\nb\"", "control character"},
		{"bad escape", `"\x"`, "invalid escape"},
		{"short unicode escape", `"\u12"`, "truncated"},
		{"bad hex digit", `"\u12zz"`, "invalid hex digit"},
		{"leading zero", `01`, "after the JSON value"},
		{"leading plus", `+1`, "unexpected"},
		{"bare dot", `1.`, "no digits after"},
		{"bare exponent", `1e`, "no digits in exponent"},
		{"infinity", `1e400`, "outside the range"},
		{"negative infinity", `-1e400`, "outside the range"},
		{"NaN word", `NaN`, "unexpected"},
		{"single quotes", `{'a':1}`, "expected a member name"},
		{"trailing comma", `[1,]`, "unexpected"},
		{"missing colon", `{"a" 1}`, "expected ':'"},
		{"unterminated", `{"a":"b`, "unterminated string"},
		{"bad literal", `tru`, "invalid literal"},
		{"too deep", strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1), "nesting deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %s, want an error containing %q", tc.in, got, tc.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Canonicalize(%q): error %q, want a *SyntaxError containing %q", tc.in, err, tc.want)
			}
		})
	}
}

// FuzzCanonicalize checks that canonicalization keeps the meaning (as encoding/json reads
// it), is a fixed point, and accepts nothing encoding/json rejects.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.5e-7,"x\u00e9"],"a":{"\ud83d\ude00":null,"\ue000":true}}`, `"\u0000\\"`, `[1e21,1e-7,-0]`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Canonicalize(in)
		if err != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted %q, which encoding/json rejects", in)
		}
		var a, b any
		if err := json.Unmarshal(in, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &b); err != nil {
			t.Fatalf("canonical form %q does not parse: %v", got, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed: %q -> %q", in, got)
		}
		again, err := Canonicalize(got)
		if err != nil || string(again) != string(got) {
			t.Fatalf("not a fixed point: %q -> %q (%v)", got, again, err)
		}
	})
}

func TestInsertMember(t *testing.T) {
	for _, obj := range []string{
		`{}`, `{"a":1}`, `{"z":1}`, `{"a":1,"z":2}`, `{"n":1}`,
		`{"a":{"m":[1,"}],\"",{"q":null}]},"b":"\"m\\","z":[]}`,
		`{"a":[[[]]],"hash2":true,"m0":-1.5e-7}`,
		"{\"a\":\"x\",\"\u00e9\":1}",
	} {
		got := insertMember([]byte(obj), "m", "v")
		var m map[string]any
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Fatal(err)
		}
		m["m"] = "v"
		want, err := canonicalJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("insertMember(%s) = %s, want %s", obj, got, want)
		}
	}
}

// TestSealMatchesCanonical checks that the spliced forms of entries and checkpoints are
// exactly their canonical JSON.
func TestSealMatchesCanonical(t *testing.T) {
	for _, e := range []Entry{
		{TraceID: NewID(), SessionID: NewID(), Kind: "created", Agent: "", Data: json.RawMessage(`{"hash":"x","z":[{"a":"}"}]}`), PrevHash: GenesisHash},
		{TraceID: NewID(), SessionID: NewID(), Index: 12, Kind: "note", Agent: "h\u00e9 \"q\" \u2028", Data: json.RawMessage(`null`), PrevHash: strings.Repeat("ab", 32)},
	} {
		raw, err := sealEntry(&e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := canonicalJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != string(want) {
			t.Fatalf("sealEntry = %s\nwant        %s", raw, want)
		}
	}
	c := Checkpoint{SessionID: NewID(), TraceID: NewID(), Length: 3, Head: GenesisHash}
	raw, err := signCheckpoint(testKey, &c)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := canonicalJSON(c); string(raw) != string(want) {
		t.Fatalf("signCheckpoint = %s\nwant            %s", raw, want)
	}
}

func TestRemoveMember(t *testing.T) {
	for _, obj := range []string{
		`{"m":1}`, `{"a":1,"m":"x"}`, `{"m":[1,{"m":2}],"z":"}"}`, `{"a":{"m":1},"m":{"q":"\"m\""},"z":[]}`, `{"a":1,"n":2}`,
	} {
		got, ok := removeMember([]byte(obj), "m")
		var m map[string]any
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Fatal(err)
		}
		_, had := m["m"]
		delete(m, "m")
		want, _ := canonicalJSON(m)
		if ok != had || string(got) != string(want) {
			t.Errorf("removeMember(%s) = %s, %v; want %s, %v", obj, got, ok, want, had)
		}
	}
}

// TestCanonicalizeMemory: canonicalizing costs memory in proportion to the input, whatever
// its shape: 8 MB of "[0,0,…]" allocates about its size, not the ~2.3 GB a tree of the values
// took (a 10 MB request body or bundle line could exhaust the host); an object of 500,000
// members out of order, about 20 times its size (one span per member), not 43.
func TestCanonicalizeMemory(t *testing.T) {
	arr := append(append([]byte("["), bytes.Repeat([]byte("0,"), 4<<20)...), "0]"...)
	var obj bytes.Buffer
	obj.WriteByte('{')
	for i := range 500000 {
		if i > 0 {
			obj.WriteByte(',')
		}
		fmt.Fprintf(&obj, `"%07d":0`, 500000-i) // reverse order: every member moves
	}
	obj.WriteByte('}')
	for name, in := range map[string][]byte{"array": arr, "object": obj.Bytes()} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		out, err := Canonicalize(in)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		limit := 2 * len(in)
		if name == "object" {
			limit = 24 * len(in)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(limit) {
			t.Errorf("%s of %d bytes: allocated %d bytes (%.1f× the input)", name, len(in), got, float64(got)/float64(len(in)))
		}
		if name == "object" && !bytes.HasPrefix(out, []byte(`{"0000001":0,"0000002":0,`)) {
			t.Errorf("object not sorted: %.40s", out)
		}
	}
}

// TestCanonicalDataKeepsIntegers: data whose integers a double cannot hold exactly is
// refused with a clear error rather than rounded silently; exact ones of any size pass.
func TestCanonicalDataKeepsIntegers(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{`{"id":9007199254740992}`, `{"id":9007199254740992}`, true},
		{`{"id":9007199254740993}`, "integer 9007199254740993 cannot be kept exactly", false},
		{`{"id":-12345678901234567}`, "integer -12345678901234567 cannot be kept exactly", false},
		{`{"n":[1000000000000000000000]}`, `{"n":[1e+21]}`, true},
		{`{"n":-0}`, `{"n":0}`, true},
		{`{"n":1.5e300}`, `{"n":1.5e+300}`, true},
		{`{"n":9007199254740993.0}`, `{"n":9007199254740992}`, true}, // a decimal is a double already
	} {
		got, err := canonicalData(json.RawMessage(c.in), true)
		if c.ok && (err != nil || string(got) != c.want) || !c.ok && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: %s %v", c.in, got, err)
		}
	}
	// Canonicalize itself follows RFC 8785 (verifiers recompute hashes of stored entries).
	if got, err := Canonicalize([]byte(`9007199254740993`)); err != nil || string(got) != "9007199254740992" {
		t.Errorf("Canonicalize: %s %v", got, err)
	}
}
