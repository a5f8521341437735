package record

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sameAsJSON checks that parse reads js as json.Unmarshal reads it into
// a T.
func sameAsJSON[T any](t testing.TB, js string, parse func(string) (T, error)) {
	var want T
	wantErr := json.Unmarshal([]byte(js), &want)
	got, err := parse(js)
	if wantErr != nil {
		require.Error(t, err, "json.Unmarshal refuses %q", js)
		return
	}
	require.NoError(t, err, "json.Unmarshal reads %q", js)
	require.Equal(t, want, got, "%q", js)
}

// parseWriteValue is parseWrite giving a write, not a pointer.
func parseWriteValue(js string) (write, error) {
	w, err := parseWrite(js)
	if err != nil {
		return write{}, err
	}
	return *w, nil
}

func TestParseWrite(t *testing.T) {
	marshalled, err := json.Marshal(write{Kind: KindPrescription, Entry: "d5c819ff-67a9-48af-a0fe-97724c03035b", Field: "drug", Value: "Zinc sulphate 20 mg", Supersedes: []string{"66f2.17.0", "66f2.16.3"}, User: "u-mutua", Name: "CO Mutua", Role: RoleClinician, Device: "kamuga-tablet-1", At: 1796676498062})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		js    string
		plain bool // read without json.Unmarshal
	}{
		{"as json.Marshal writes it", string(marshalled), true},
		{"no optional fields", `{"k":"lab","e":"x","f":"test","v":"Hb","u":"u-1","r":"nurse","t":0}`, true},
		{"empty object", `{}`, true},
		{"empty supersedes", `{"s":[],"k":"lab"}`, true},
		{"negative time", `{"t":-5}`, true},
		{"non-ASCII value", `{"v":"Ñandú 5 µg"}`, true},
		{"escaped quote", `{"v":"say \"ah\""}`, false},
		{"HTML escapes json.Marshal writes", `{"v":"amoxicillin \u0026 clavulanate"}`, false},
		{"spaces", `{ "k" : "lab" }`, false},
		{"trailing space", `{"k":"lab"} `, false},
		{"key in capitals", `{"K":"lab"}`, false},
		{"unknown key", `{"x":1,"k":"lab"}`, false},
		{"repeated key", `{"k":"lab","k":"vital"}`, false},
		{"null value", `{"v":null}`, false},
		{"null supersedes", `{"s":null}`, false},
		{"time with a fraction", `{"t":1.5}`, false},
		{"time with an exponent", `{"t":1e3}`, false},
		{"time with a leading zero", `{"t":012}`, false},
		{"time too large", `{"t":99999999999999999999}`, false},
		{"invalid UTF-8", "{\"v\":\"\xff\"}", false},
		{"number for a string", `{"v":5}`, false},
		{"string for the time", `{"t":"5"}`, false},
		{"trailing comma", `{"k":"lab",}`, false},
		{"not an object", `[1]`, false},
		{"truncated", `{"k":"la`, false},
		{"trailing bytes", `{"k":"lab"}x`, false},
		{"control character", "{\"v\":\"a\tb\"}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, plain := parseWritePlain(tc.js)
			assert.Equal(t, tc.plain, plain, "read directly")
			sameAsJSON(t, tc.js, parseWriteValue)
		})
	}
}

func FuzzParseWrite(f *testing.F) {
	for _, s := range []string{
		`{"k":"prescription","e":"d5c8","f":"drug","v":"Zinc","s":["a.1.0"],"u":"u-mutua","n":"CO Mutua","r":"clinician","d":"tab-1","t":1796676498062}`,
		`{"k":"lab","t":-0}`, `{"s":[]}`, `{"v":"\u00e9"}`, `{"t":1e3}`, `{}`, `{"k":"a","K":"b"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		sameAsJSON(t, js, parseWriteValue)
	})
}

// BenchmarkParseWrite reads a write as json.Marshal gives it, directly
// and with json.Unmarshal.
func BenchmarkParseWrite(b *testing.B) {
	js, err := json.Marshal(write{Kind: KindPrescription, Entry: "d5c819ff-67a9-48af-a0fe-97724c03035b", Field: "drug", Value: "Zinc sulphate 20 mg", User: "u-mutua", Name: "CO Mutua", Role: RoleClinician, Device: "kamuga-tablet-1", At: 1796676498062})
	require.NoError(b, err)
	b.Run("parseWrite", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseWrite(string(js)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w write
			if err := json.Unmarshal(js, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestParseMessage: a change's message reads as json.Unmarshal reads it,
// directly when json.Marshal wrote it.
func TestParseMessage(t *testing.T) {
	marshalled, err := json.Marshal(message{Op: "prescribe", User: "u-mutua", Name: "CO Mutua", Role: RoleClinician, Device: "kamuga-tablet-1", Entry: "d5c8", Summary: "Prescribed Zinc sulphate 20 mg", At: 1796676498062})
	require.NoError(t, err)
	for _, tc := range []struct {
		js    string
		plain bool
	}{
		{string(marshalled), true},
		{`{"op":"register","user":"u-1","role":"nurse","entry":"x","summary":"","at":1}`, true},
		{`{"op":"a","op":"b"}`, false},
		{`{"Op":"register"}`, false},
		{`{"summary":"Prescribed amoxicillin \u0026 clavulanate"}`, false},
		{`{"at":"1"}`, false},
		{`not json`, false},
	} {
		_, plain := parseMessagePlain(tc.js)
		assert.Equal(t, tc.plain, plain, "%s read directly", tc.js)
		sameAsJSON(t, tc.js, parseMessage)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"op":"prescribe","user":"u-mutua","name":"CO Mutua","role":"clinician","device":"tab-1","entry":"d5c8","summary":"Prescribed","at":1796676498062}`,
		`{"op":"x","at":-0}`, `{}`, `{"summary":"\u00e9"}`, `{"at":1e3}`, `{"op":"a","OP":"b"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		sameAsJSON(t, js, parseMessage)
	})
}
