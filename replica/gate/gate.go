package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/replica"
)

// Sender is the enrolled device a bundle comes from, as the courier that
// delivered it authenticated it: HTTPS from the device certificate of the
// channel, a hand-carried file from the bundle's own signature
// (IdentifyBundle).
type Sender struct {
	Replica string // the device's replica ID (32 hex digits)
	Clinic  string // the clinic whose charts it may read and write
	Name    string // the device's name, for logs ("" if the courier does not know it)
}

// AccessLog records which device (and, for writes, which user) read or
// wrote which chart. *audit.Log is one. Append must be durable when it
// returns nil, and safe for concurrent use.
type AccessLog interface {
	Append(ctx context.Context, entries ...audit.Entry) error
}

// Config configures a Gate. Replica is required; every other zero value
// means the documented default.
type Config struct {
	// Replica is the replica served (the cloud's).
	Replica *replica.Replica
	// AccessLog, if set, records every chart a sender writes (before the
	// changes are stored), every chart whose changes an answer carries
	// (before the answer is handed to the courier), and every bundle
	// refused for what it holds or who sent it (see Recorded). A bundle
	// whose writes cannot be recorded is not stored, and an answer whose
	// reads cannot be recorded is not given out: both fail with an error
	// matching ErrAccessLog.
	AccessLog AccessLog
	// CheckSender, if set, is asked whether a sender may still send:
	// nil, an error matching ErrRevoked for a device the administrator
	// revoked (its bundle is refused with CodeRevokedCredential and
	// recorded), or another error when it cannot tell (nothing is
	// applied; the error is returned as the gate's own failure). It must
	// be safe for concurrent use. A courier that checks its channel
	// already (HTTPS, at every handshake and request) may leave it nil.
	CheckSender func(ctx context.Context, s Sender) error
	// MaxConcurrent bounds the bundles being applied and answered at once
	// (default 32). A bundle that finds no slot within QueueWait is
	// refused with ErrBusy. Of those, a few at a time (as many as the
	// machine has processors, at least 2) are applied, in arrival order:
	// the replica serialises writes anyway.
	MaxConcurrent int
	// QueueWait is how long a bundle waits for a slot, and a sender for
	// its turn (Enter), before ErrBusy or ErrSenderBusy (default 10s).
	QueueWait time.Duration
	// Logger receives a line per refusal; nil discards them.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replica == nil:
		return errors.New("gate config: Replica is required")
	case c.MaxConcurrent < 0 || c.QueueWait < 0:
		return errors.New("gate config: limits must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 32
	}
	if c.QueueWait == 0 {
		c.QueueWait = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Errors of admission and of the gate's own failures, matched with
// errors.Is. Refusals of a bundle for what it holds or who sent it are
// the replica's errors (see CodeOf).
var (
	// ErrBusy: no slot came free within Config.QueueWait; the sender
	// should try again shortly.
	ErrBusy = errors.New("gate: serving as many bundles as it can")
	// ErrSenderBusy: another bundle of the same sender is being applied
	// (and a few more wait for it), and its turn did not come within
	// Config.QueueWait.
	ErrSenderBusy = errors.New("gate: another bundle of this sender in progress")
	// ErrGone: the context ended (the sender went away) before its
	// bundle was applied, or before its answer was made. A bundle that
	// was being applied is applied whole.
	ErrGone = errors.New("gate: sender gone")
	// ErrAccessLog: the access log could not record a write or a read:
	// nothing of the bundle was stored, or the answer was not made.
	ErrAccessLog = errors.New("gate: access log unavailable")
	// ErrRevoked: Config.CheckSender says the sender's device was
	// revoked by the administrator.
	ErrRevoked = errors.New("gate: device revoked by the administrator")
)

// Gate is a replica's policy for the enrolled devices it serves, whatever
// courier brings their bundles: it applies a sender's bundle within its
// clinic's scope, with every change checked against its author's role
// and signature, admits a few at a time, records writes, reads and
// refusals in the access log, and makes the sender's answer from its
// clinic's charts only. It is safe for concurrent use.
type Gate struct {
	cfg     Config
	rep     *replica.Replica
	log     *slog.Logger
	senders senderTurns   // one bundle of a sender at a time
	slots   chan struct{} // bundles being applied and answered
	apply   chan struct{} // bundles applying and answers being made
	waiting atomic.Int64
}

// New returns a Gate in front of cfg.Replica.
func New(cfg Config) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Gate{
		cfg: cfg, rep: cfg.Replica,
		log:     cfg.Logger,
		senders: senderTurns{turns: map[string]*senderTurn{}},
		slots:   make(chan struct{}, cfg.MaxConcurrent),
		apply:   make(chan struct{}, min(cfg.MaxConcurrent, max(2, runtime.GOMAXPROCS(0)))),
	}, nil
}

// Replica returns the replica the gate serves.
func (g *Gate) Replica() *replica.Replica { return g.rep }

// Stats is what a Gate is doing now.
type Stats struct {
	// Waiting counts bundles waiting for a slot or for their sender's turn.
	Waiting int64
}

// Stats returns what the gate is doing now.
func (g *Gate) Stats() Stats { return Stats{Waiting: g.waiting.Load()} }

// Receive applies a bundle from s: it must come from s (replica.ErrWrongSender
// otherwise), change only charts in s's clinic's scope
// (replica.ErrOutOfScope), and hold only changes whose recorded role may
// change the chart sections they touch (replica.ErrUnauthorizedChange);
// a replica opened with replica.Config.Keys also refuses changes not
// signed by the devices they name (replica.ErrForgedChange) and changes of
// revoked devices made after their revocation (replica.ErrRevokedChange).
// A bundle refused for those is quarantined by the replica, and recorded
// in the access log (an audit.Refused entry whose Detail is the code and
// the error). The writes of a bundle taken are recorded before they are
// stored. The bundle is applied whole or not at all, even if ctx ends
// meanwhile.
//
// Receive takes no slot of the gate's: Sync does, and a courier that
// applies bundles one at a time (an import from a folder) may call
// Receive directly. (The replica may wait for one of the process's
// receive slots, which are more than the gate applies at once; see
// replica.Replica.ReceiveFrom.) The
// replica's errors are returned as they are, so that a courier can tell
// the sender exactly why.
func (g *Gate) Receive(ctx context.Context, s Sender, data []byte) (replica.Received, error) {
	if g.cfg.CheckSender != nil {
		if err := g.cfg.CheckSender(ctx, s); errors.Is(err, ErrRevoked) {
			g.refused(ctx, s, CodeRevokedCredential, err)
			return replica.Received{}, err
		} else if err != nil {
			return replica.Received{}, fmt.Errorf("check sender %s: %w", s.Replica, err)
		}
	}
	opt := replica.ReceiveOptions{Sender: s.Replica, Clinic: s.Clinic, CheckAuthors: true}
	if g.cfg.AccessLog != nil {
		// The writes are recorded before they are stored: none can be
		// stored unrecorded (a failed store write leaves an entry for a
		// write the sender will send again).
		opt.BeforeWrite = func(ctx context.Context, rec replica.Received) error {
			if err := g.cfg.AccessLog.Append(ctx, WriteEntries(s, rec)...); err != nil {
				return fmt.Errorf("record the writes in the access log: %w: %w", ErrAccessLog, err)
			}
			return nil
		}
	}
	rec, err := g.rep.ReceiveFrom(ctx, data, opt)
	if err != nil {
		if code := CodeOf(err); Recorded(code) {
			g.refused(ctx, s, code, err)
		}
	}
	return rec, err
}

// refused records a refusal in the access log (a failure to record it is
// logged: the refusal stands either way).
// Refused records a refusal a courier made before any bundle reached the
// gate (a revoked device's TLS handshake) as the gate records its own: in
// its log and, as an audit.Refused entry, in the access log, so that a
// refused device shows alike whichever courier it came by.
func (g *Gate) Refused(ctx context.Context, s Sender, code string, err error) {
	g.refused(ctx, s, code, err)
}

func (g *Gate) refused(ctx context.Context, s Sender, code string, err error) {
	g.log.Info("bundle refused", "code", code, "device", s.Name, "replica", s.Replica, "clinic", s.Clinic, "err", err)
	if g.cfg.AccessLog == nil {
		return
	}
	if lerr := g.cfg.AccessLog.Append(context.WithoutCancel(ctx), RefusedEntry(s, code, err.Error())); lerr != nil {
		g.log.Error("access log: cannot record a refused bundle", "replica", s.Replica, "err", lerr)
	}
}

// AnswerOptions varies Answer.
type AnswerOptions struct {
	// NoAuth leaves the answer unsigned, for a courier that authenticates
	// the replica to the sender itself (TLS). A bundle carried by hand is
	// signed if the replica has a Config.Signer.
	NoAuth bool
}

// Answer makes the bundle for s: the changes it lacks of charts in its
// clinic's scope only, and the replica's acknowledgement of what it holds
// from s. The charts it carries are recorded in the access log (audit.Read)
// before it is returned; an answer that cannot be recorded is not returned
// (ErrAccessLog).
func (g *Gate) Answer(ctx context.Context, s Sender, opt AnswerOptions) (replica.Outgoing, error) {
	out, err := g.rep.MakeBundleFor(ctx, s.Replica, replica.BundleOptions{Clinic: s.Clinic, NoAuth: opt.NoAuth})
	if err != nil {
		return out, err
	}
	if g.cfg.AccessLog != nil {
		if entries := ReadEntries(s, out); len(entries) > 0 {
			if err := g.cfg.AccessLog.Append(context.WithoutCancel(ctx), entries...); err != nil {
				return replica.Outgoing{}, fmt.Errorf("record the reads in the access log: %w: %w", ErrAccessLog, err)
			}
		}
	}
	return out, nil
}

// Sync is one exchange with s, for a request/response courier: it takes a
// slot (ErrBusy if none comes free within Config.QueueWait), waits its
// turn in the apply queue, applies data (Receive) and makes the answer
// (Answer). It returns ErrGone if ctx ends before the bundle is applied or
// before the answer is made; a bundle already being applied is applied
// whole. What was received is returned with any error.
func (g *Gate) Sync(ctx context.Context, s Sender, data []byte, opt AnswerOptions) (replica.Outgoing, replica.Received, error) {
	if !g.take(ctx, g.slots) {
		if ctx.Err() != nil {
			return replica.Outgoing{}, replica.Received{}, fmt.Errorf("%w while its bundle waited for a slot: %w", ErrGone, ctx.Err())
		}
		return replica.Outgoing{}, replica.Received{}, ErrBusy
	}
	defer func() { <-g.slots }()
	// Apply in arrival order (a channel queues its waiters first come,
	// first served) rather than all at once on the replica's lock.
	select {
	case g.apply <- struct{}{}:
	case <-ctx.Done():
		return replica.Outgoing{}, replica.Received{}, fmt.Errorf("%w while its bundle waited to be applied: %w", ErrGone, ctx.Err())
	}
	defer func() { <-g.apply }()
	// A bundle received whole is applied even if the sender has gone
	// meanwhile: it is idempotent, and its resend is then cheap.
	rec, err := g.Receive(context.WithoutCancel(ctx), s, data)
	if err != nil {
		return replica.Outgoing{}, rec, err
	}
	out, err := g.Answer(ctx, s, opt)
	if err != nil && ctx.Err() != nil {
		return out, rec, fmt.Errorf("%w before the answer (%d changes applied): %w", ErrGone, rec.Applied, err)
	}
	return out, rec, err
}

// take takes a slot of sem, waiting up to QueueWait.
func (g *Gate) take(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	t := time.NewTimer(g.cfg.QueueWait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// Enter waits up to Config.QueueWait for the sender's turn: a sender has
// one bundle in progress at a time, and a few more (maxSenderWaiting) may
// wait for it (a device whose link dropped may have its abandoned request
// still in progress when it tries again). It returns the function that
// ends the turn, or ErrSenderBusy if the turn did not come in time or too
// many bundles of the sender wait already.
func (g *Gate) Enter(ctx context.Context, sender string) (leave func(), err error) {
	leave, ok := g.senders.enter(ctx, sender, g.cfg.QueueWait, &g.waiting)
	if !ok {
		return nil, ErrSenderBusy
	}
	return leave, nil
}

// senderTurns lets each sender have one bundle in progress, and a few
// more waiting for it.
type senderTurns struct {
	mu    sync.Mutex
	turns map[string]*senderTurn // by replica ID; only senders with a bundle in progress or waiting
}

// maxSenderWaiting bounds the bundles of one sender waiting for its turn.
const maxSenderWaiting = 4

type senderTurn struct {
	token chan struct{} // holds a token while a bundle of the sender is in progress
	users int           // bundles in progress or waiting
}

func (g *senderTurns) enter(ctx context.Context, sender string, wait time.Duration, waiting *atomic.Int64) (leave func(), ok bool) {
	g.mu.Lock()
	t := g.turns[sender]
	if t == nil {
		t = &senderTurn{token: make(chan struct{}, 1)}
		g.turns[sender] = t
	}
	if t.users > maxSenderWaiting {
		g.mu.Unlock()
		return nil, false
	}
	t.users++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if t.users--; t.users == 0 {
			delete(g.turns, sender)
		}
	}
	select {
	case t.token <- struct{}{}:
		return func() { <-t.token; done() }, true
	default:
	}
	waiting.Add(1)
	defer waiting.Add(-1)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case t.token <- struct{}{}:
		return func() { <-t.token; done() }, true
	case <-timer.C:
	case <-ctx.Done():
	}
	done()
	return nil, false
}
