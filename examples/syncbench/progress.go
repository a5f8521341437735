package main

import (
	"fmt"
	"os"
	"time"
)

// progress reports a long step on stderr: on a terminal, one line
// rewritten in place; otherwise (a log file, CI), plain lines, at most one
// every progressEvery, so a log stays readable.
type progress struct {
	what  string
	tty   bool
	start time.Time
	last  time.Time // of the last plain line
	shown bool      // a terminal line is open
}

const progressEvery = 10 * time.Second

var stderrIsTerminal = func() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}()

func newProgress(what string) *progress {
	now := time.Now()
	return &progress{what: what, tty: stderrIsTerminal, start: now, last: now}
}

// update shows the step's state now (on a terminal) or when the last
// plain line is progressEvery old.
func (p *progress) update(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	elapsed := time.Since(p.start).Round(time.Second)
	if p.tty {
		fmt.Fprintf(os.Stderr, "\r\033[K%s: %s (%s)", p.what, msg, elapsed)
		p.shown = true
		return
	}
	if time.Since(p.last) >= progressEvery {
		p.last = time.Now()
		fmt.Fprintf(os.Stderr, "%s: %s (%s)\n", p.what, msg, elapsed)
	}
}

// done ends the step with a final line.
func (p *progress) done(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	elapsed := time.Since(p.start).Round(time.Millisecond)
	if p.tty && p.shown {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	fmt.Fprintf(os.Stderr, "%s: %s (%s)\n", p.what, msg, elapsed)
}
