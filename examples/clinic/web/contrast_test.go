package web

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// luminance is a colour's relative luminance (WCAG 2.1), from "#rgb" or
// "#rrggbb".
func luminance(t *testing.T, hex string) float64 {
	h := strings.TrimPrefix(hex, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	require.Len(t, h, 6, "colour %s", hex)
	var l [3]float64
	for i := range l {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		require.NoError(t, err)
		c := float64(v) / 255
		if c <= 0.04045 {
			l[i] = c / 12.92
		} else {
			l[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

// contrast is the WCAG contrast ratio of two colours.
func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}

var (
	cssRule = regexp.MustCompile(`([^{}]+)\{([^}]*)\}`)
	cssFg   = regexp.MustCompile(`(?:^|;)color:(#[0-9a-fA-F]{3,6})\b`)
	cssBg   = regexp.MustCompile(`(?:^|;)background(?:-color)?:(#[0-9a-fA-F]{3,6})\b`)
)

// TestTextContrast: every text colour of the stylesheet, on the
// background it is drawn on (its rule's own, else that of the element it
// sits in, as the selector's first part names it, else the page's
// white), has a contrast ratio of at least 4.5:1 (WCAG 2.1 AA for body
// text). A failure names the selector and the two colours.
func TestTextContrast(t *testing.T) {
	css, err := os.ReadFile("static/style.css")
	require.NoError(t, err)
	type rule struct{ fg, bg string }
	rules := map[string]rule{}
	var order []string
	for _, m := range cssRule.FindAllStringSubmatch(string(css), -1) {
		decls := strings.ReplaceAll(m[2], " ", "")
		var r rule
		if f := cssFg.FindStringSubmatch(decls); f != nil {
			r.fg = f[1]
		}
		if b := cssBg.FindStringSubmatch(decls); b != nil {
			r.bg = b[1]
		}
		for _, sel := range strings.Split(m[1], ",") {
			sel = strings.TrimSpace(sel)
			rules[sel] = r
			order = append(order, sel)
		}
	}
	page := rules["body"].bg
	require.NotEmpty(t, page, "the page's background is set")
	checked := 0
	for _, sel := range order {
		r := rules[sel]
		if r.fg == "" {
			continue
		}
		bg := r.bg
		if bg == "" {
			if outer, _, nested := strings.Cut(sel, " "); nested {
				bg = rules[outer].bg
			}
		}
		if bg == "" {
			bg = page
		}
		ratio := contrast(t, r.fg, bg)
		assert.GreaterOrEqual(t, ratio, 4.5, "%s: text %s on %s has a contrast of %.2f:1", sel, r.fg, bg, ratio)
		checked++
	}
	assert.Greater(t, checked, 10, "the stylesheet's text colours were found")
	// The check itself: black on white is 21:1, and a light grey on white fails.
	assert.InDelta(t, 21.0, contrast(t, "#000", "#fff"), 0.01)
	assert.Less(t, contrast(t, "#999", "#fff"), 4.5)
}
