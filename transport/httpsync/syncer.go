package httpsync

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// SyncerConfig tunes a Syncer. Every zero value means the documented
// default.
type SyncerConfig struct {
	// Debounce is how long after the last Notify the Syncer waits before
	// syncing, so a burst of edits goes in one sync (default 2s).
	Debounce time.Duration
	// MaxDelay bounds how long edits wait while more keep coming
	// (default 30s).
	MaxDelay time.Duration
	// Interval is how often the Syncer syncs when nothing happens, to
	// fetch other devices' changes (default 5m).
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts while the
	// cloud is unreachable, busy or failing (defaults 2s and 2m): it
	// doubles, with jitter, from one to the other.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one sync (default 10m).
	Timeout time.Duration
	// Logger receives a line per sync; nil discards them.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c SyncerConfig) Validate() error {
	if c.Debounce < 0 || c.MaxDelay < 0 || c.Interval < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.Timeout < 0 {
		return errors.New("httpsync syncer: durations must not be negative")
	}
	return nil
}

func (c SyncerConfig) withDefaults() SyncerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Debounce, 2*time.Second)
	def(&c.MaxDelay, 30*time.Second)
	def(&c.Interval, 5*time.Minute)
	def(&c.MinBackoff, 2*time.Second)
	def(&c.MaxBackoff, 2*time.Minute)
	def(&c.Timeout, 10*time.Minute)
	c.MaxDelay = max(c.MaxDelay, c.Debounce)
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Status is what a UI shows about syncing.
type Status struct {
	// Online: the cloud answered the last attempt (even with a refusal).
	Online bool
	// Syncing: a sync is running now.
	Syncing bool
	// LastSuccess and LastAttempt are when the last successful sync
	// finished and the last attempt started (zero if none yet).
	LastSuccess, LastAttempt time.Time
	// NextSync is when the next sync is planned.
	NextSync time.Time
	// Pending counts local changes the cloud has not acknowledged; -1
	// until the first successful sync.
	Pending int
	// LastError explains the last failed attempt ("" after a success).
	LastError string
	// Refused: the cloud refused the last bundle sent (a 4xx answer such
	// as a malformed or forbidden change, or an expired credential;
	// LastError says why). The Syncer does not send that same bundle
	// again on its own: only a bundle that differs (after a new edit, or
	// changes received by another courier) or SyncNow. A person has to
	// act on a refusal; resending it cannot help. False after a success.
	Refused bool
	// Syncs counts successful syncs since Start; Failures the failed
	// attempts since the last success.
	Syncs, Failures int
}

// Syncer keeps a replica synced with the cloud in the background: soon
// after local edits (Notify, debounced), every Interval, and, while the
// cloud is unreachable, at backed-off attempts so that it syncs soon after
// the link returns. Each request is tried twice (a blip); beyond that the
// Syncer backs off itself, so Status shows the cloud offline promptly.
// A refusal (4xx other than 408 and 429) is not retried: the Syncer
// tries again at the next Notify or Interval, and then only if the bundle
// it would send differs from the refused one (Status.Refused); SyncNow
// sends it whatever it is. A refusal for changes of revoked devices that
// taught the replica their revocations (LearntRevocationsError) is
// followed by another sync at once, which leaves those changes out.
// One goroutine, owned by Start and Close, does all the syncing. Its
// methods are safe for concurrent use.
type Syncer struct {
	c   *Client
	cfg SyncerConfig
	log *slog.Logger

	notify chan struct{}
	now    chan struct{}

	mu      sync.Mutex
	status  Status
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// syncerAttempts is how many tries a Syncer gives each request before it
// backs off itself: one retry for a blip.
const syncerAttempts = 2

// NewSyncer returns a Syncer for c. Call Start to run it.
func NewSyncer(c *Client, cfg SyncerConfig) (*Syncer, error) {
	if c == nil {
		return nil, errors.New("httpsync syncer: a client is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Syncer{
		c: c, cfg: cfg, log: cfg.Logger,
		notify: make(chan struct{}, 1), now: make(chan struct{}, 1),
		status:  Status{Pending: -1},
		changed: make(chan struct{}),
	}, nil
}

// Start starts the Syncer's goroutine, which syncs at once and then as
// described on Syncer, until ctx ends or Close is called. Start may be
// called once.
func (s *Syncer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("httpsync syncer: already started")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx)
	return nil
}

// Close stops the Syncer, cancelling a sync in progress (which loses
// nothing: an unfinished sync is redone next time), and waits for its
// goroutine to end.
func (s *Syncer) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}

// Notify tells the Syncer that local edits were saved. It never blocks.
func (s *Syncer) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// SyncNow asks for a sync as soon as possible, forgetting any backoff:
// for a "sync now" button, or when the system reports the network is
// back. It never blocks.
func (s *Syncer) SyncNow() {
	select {
	case s.now <- struct{}{}:
	default:
	}
}

// Status returns the current status.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Watch returns the current status and a channel closed when it next
// changes, for a UI that redraws on change.
func (s *Syncer) Watch() (Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, s.changed
}

func (s *Syncer) update(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Syncer) run(ctx context.Context) {
	defer close(s.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	schedule := func(at time.Time) {
		timer.Reset(time.Until(at))
		s.update(func(st *Status) { st.NextSync = at })
	}
	var (
		dirtySince time.Time // first edit not yet covered by a sync
		backingOff bool
		failures   int
		asked      bool // SyncNow: send even a bundle refused before
	)
	s.refreshPending(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
			s.refreshPending(ctx)
			if backingOff {
				continue // the backoff attempt will carry the edits
			}
			now := time.Now()
			if dirtySince.IsZero() {
				dirtySince = now
			}
			at := now.Add(s.cfg.Debounce)
			if deadline := dirtySince.Add(s.cfg.MaxDelay); at.After(deadline) {
				at = deadline
			}
			schedule(at)
		case <-s.now:
			failures, backingOff, asked = 0, false, true
			schedule(time.Now())
		case <-timer.C:
			dirtySince = time.Time{}
			err := s.syncOnce(ctx, !asked)
			asked = false
			if ctx.Err() != nil {
				return
			}
			var held *errNotResent
			var learnt *LearntRevocationsError
			switch {
			case errors.As(err, &held):
				// Nothing was sent: the refusal stands.
				schedule(time.Now().Add(s.cfg.Interval))
			case errors.As(err, &learnt):
				// Refused for changes of revoked devices, whose
				// revocations the replica has now learnt: its next
				// bundle leaves them out. A refusal that teaches
				// nothing new comes to the default case.
				failures++
				backingOff = false
				schedule(time.Now())
			case err == nil:
				failures, backingOff = 0, false
				schedule(time.Now().Add(s.cfg.Interval))
			case errors.Is(err, ErrUnreachable), errors.Is(err, ErrBusy), errors.Is(err, ErrServer):
				failures++
				backingOff = true
				schedule(time.Now().Add(s.backoff(failures)))
			default:
				// A refusal or a misconfiguration: retrying soon will not
				// help; a person has to act (LastError says what).
				failures++
				backingOff = false
				schedule(time.Now().Add(s.cfg.Interval))
			}
		}
	}
}

// backoff is the wait after n consecutive failures: exponential from
// MinBackoff, capped at MaxBackoff, with jitter in its upper half so that
// many devices coming back at once spread out.
func (s *Syncer) backoff(n int) time.Duration {
	d := s.cfg.MaxBackoff
	if n < 30 {
		d = min(d, s.cfg.MinBackoff<<(n-1))
	}
	return d/2 + rand.N(d/2+1)
}

// syncOnce runs one sync. With holdRefused, a bundle the cloud refused
// last time is not sent again (an *errNotResent, and the status is left as
// it was).
func (s *Syncer) syncOnce(ctx context.Context, holdRefused bool) error {
	start := time.Now()
	var before time.Time
	s.update(func(st *Status) { before, st.Syncing, st.LastAttempt = st.LastAttempt, true, start })
	sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	rep, err := s.c.sync(sctx, syncerAttempts, holdRefused)
	cancel()
	if ctx.Err() != nil {
		s.update(func(st *Status) { st.Syncing = false })
		return ctx.Err()
	}
	var held *errNotResent
	if errors.As(err, &held) {
		s.update(func(st *Status) { st.Syncing, st.LastAttempt = false, before })
		return err
	}
	var se *StatusError
	reached := err == nil || errors.As(err, &se)
	s.update(func(st *Status) {
		st.Syncing, st.Online = false, reached
		if err == nil {
			st.LastSuccess, st.LastError, st.Failures, st.Refused = time.Now(), "", 0, false
			st.Syncs++
		} else {
			st.LastError = err.Error()
			st.Failures++
			st.Refused = refusal(err)
		}
	})
	if err != nil {
		s.log.Warn("sync failed", "err", err, "online", reached, "duration", time.Since(start))
	} else {
		s.log.Info("synced", "round_trips", rep.RoundTrips, "sent_changes", rep.ChangesSent, "applied", rep.ChangesApplied,
			"retries", rep.Retries, "duration", rep.Duration)
	}
	s.refreshPending(ctx)
	return err
}

// refreshPending recounts the changes the cloud has not acknowledged.
func (s *Syncer) refreshPending(ctx context.Context) {
	cloud := s.c.CloudReplica()
	if cloud == "" {
		return
	}
	peers, err := s.c.local.Peers(ctx)
	if err != nil {
		s.log.Warn("count changes waiting to sync", "err", err)
		return
	}
	for _, p := range peers {
		if p.ID == cloud {
			s.update(func(st *Status) { st.Pending = p.Unacknowledged })
			return
		}
	}
}
