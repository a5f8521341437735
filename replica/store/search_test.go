package store_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/replica/store"
)

// TestPrefixEnd: the end of a prefix's range is valid UTF-8 (PostgreSQL
// refuses anything else) and bounds exactly the strings that start with
// the prefix.
func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct {
		prefix, end string
		ok          bool
	}{
		{"n:wan", "n:wao", true},
		{"n:é", "n:ê", true},
		{"n:ÿ", "n:Ā", true}, // a last byte of 0xbf: the end is the next character, not the byte 0xc0
		{"n:\U0010FFFF", "n;", true},
		{"\uD7FF", "\uE000", true},
		{"", "", false},
		{"\U0010FFFF\U0010FFFF", "", false},
	} {
		end, ok := store.PrefixEnd(tt.prefix)
		assert.Equal(t, tt.ok, ok, "%q", tt.prefix)
		assert.Equal(t, tt.end, end, "%q", tt.prefix)
	}
	rapid.Check(t, func(t *rapid.T) {
		prefix := rapid.StringN(0, 3, -1).Draw(t, "prefix")
		s := rapid.StringN(0, 5, -1).Draw(t, "s")
		if rapid.Bool().Draw(t, "extends the prefix") {
			s = prefix + s
		}
		end, ok := store.PrefixEnd(prefix)
		if !utf8.ValidString(end) {
			t.Fatalf("end %q of %q is not UTF-8", end, prefix)
		}
		in := s >= prefix && (!ok || s < end)
		if in != strings.HasPrefix(s, prefix) {
			t.Fatalf("%q in [%q, %q) is %v, but HasPrefix is %v", s, prefix, end, in, !in)
		}
	})
}
