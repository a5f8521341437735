package identity

import (
	"strings"
	"unicode"
)

// folds maps accented Latin letters to their base letters, so that
// "José", "Jose" and "JOSÉ" fold alike. Letters of other scripts are kept
// (lower-cased).
var folds = func() map[rune]string {
	m := map[rune]string{}
	for base, accented := range map[string]string{
		"a": "àáâãäåāăąǎạảấầẩẫậắằẳẵặ", "c": "çćĉċč", "d": "ďđ", "e": "èéêëēĕėęěẹẻẽếềểễệ",
		"g": "ĝğġģ", "h": "ĥħ", "i": "ìíîïĩīĭįıǐịỉ", "j": "ĵ", "k": "ķ", "l": "ĺļľŀł",
		"n": "ñńņňŉ", "o": "òóôõöøōŏőǒọỏốồổỗộớờởỡợơ", "r": "ŕŗř", "s": "śŝşšș", "t": "ţťŧț",
		"u": "ùúûüũūŭůűųǔưụủứừửữự", "w": "ŵ", "y": "ýÿŷỳỵỷỹ", "z": "źżž",
		"ss": "ß", "ae": "æ", "oe": "œ", "th": "þ", "dh": "ð",
	} {
		for _, r := range accented {
			m[r] = base
		}
	}
	return m
}()

// Fold returns s lower-cased, without accents, with every run of
// characters other than letters and digits turned into one space
// (apostrophes dropped), and trimmed: "  N'Diaye-Mbéki " folds to
// "ndiaye mbeki".
func Fold(s string) string {
	var b strings.Builder
	space, latin := false, false
	word := func(w string, isLatin bool) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		space, latin = false, isLatin
	}
	for _, r := range s {
		r = unicode.ToLower(r)
		switch {
		case folds[r] != "":
			word(folds[r], true)
		case r == '\'' || r == '’' || r == 'ʼ':
			// an apostrophe (N'Diaye, Ochien'g): dropped
		case unicode.In(r, unicode.Mn, unicode.Mc):
			if !latin && !space && b.Len() > 0 {
				word(string(r), false) // a vowel sign or virama of another script
			}
			// a combining accent on a Latin letter: dropped
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			word(string(r), r < 0x250)
		default:
			space = true
		}
	}
	return b.String()
}

// Words returns the words of Fold(s).
func Words(s string) []string { return strings.Fields(Fold(s)) }

// Compact returns the letters and digits of Fold(s), without spaces:
// "KMG-0042" and "kmg 0042" are both "kmg0042".
func Compact(s string) string { return strings.ReplaceAll(Fold(s), " ", "") }

// Phonetic returns a key that common spelling variants of a (folded)
// word share: "Mohammed", "Muhammad" and "Mohamed"; "Lakshmi" and
// "Laxmi"; "Wanjiru" and "Wanjiro"; "Kofi" and "Coffie". It keeps the
// word's first sound (any vowel is "a"; b, v and w are "b") and then its
// consonants, after merging spellings of one sound (ph and f, ck, c and
// k, q and k, x and ks, z and s, sh and s) and doubled letters, with h,
// w and y counted as vowels. A word with no letter a-z (a number, or
// another script) has no key ("").
func Phonetic(word string) string {
	w := Compact(word)
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c < 'a' || c > 'z' {
			return ""
		}
		next := byte(0)
		if i+1 < len(w) {
			next = w[i+1]
		}
		switch {
		case c == 'p' && next == 'h':
			c, i = 'f', i+1
		case c == 's' && next == 'h':
			c, i = 's', i+1
		case c == 'c' && next == 'h':
			c, i = 'C', i+1 // "ch", a sound of its own
		case c == 'c' && next == 'k':
			c, i = 'k', i+1
		case c == 'c' || c == 'q':
			c = 'k'
		case c == 'z':
			c = 's'
		case c == 'x':
			b.WriteByte('k')
			c = 's'
		case c == 'v' || (c == 'w' && i == 0):
			c = 'b'
		}
		b.WriteByte(c)
	}
	s := b.String()
	if s == "" {
		return ""
	}
	out := []byte{s[0]}
	if vowel(s[0]) {
		out[0] = 'a'
	}
	prev := s[0]
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == prev {
			continue // doubled letters
		}
		prev = c
		if !vowel(c) {
			out = append(out, c)
		}
	}
	return string(out)
}

func vowel(c byte) bool {
	switch c {
	case 'a', 'e', 'i', 'o', 'u', 'y', 'h', 'w':
		return true
	}
	return false
}

// PhoneKey returns the last nine digits of a phone number (fewer if it
// has fewer, "" below five), so that "+254 712 345678" and "0712 345678"
// share a key: a national number without its country code or trunk
// prefix, in the countries this library is used in.
func PhoneKey(s string) string {
	var d []byte
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	if len(d) < 5 {
		return ""
	}
	return string(d[max(0, len(d)-9):])
}
