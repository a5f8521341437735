package liveroster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
)

// Source is where the roster's records are kept: a roster file, a table
// of a database shared by several servers.
type Source interface {
	// MergeRoster merges into r the records kept since version since (0:
	// every record) and returns the version of what it holds now; it
	// returns since when nothing was kept since. Versions only grow. It is
	// called by one goroutine at a time.
	MergeRoster(ctx context.Context, r *device.Roster, since int64) (version int64, err error)
}

// Defaults of Config.
const (
	// DefaultRefresh is Config.Refresh when it is zero.
	DefaultRefresh = 30 * time.Second
	// DefaultLoadTimeout is Config.LoadTimeout when it is zero.
	DefaultLoadTimeout = 10 * time.Second
)

// Config says whom a Roster trusts and how often it looks at its source.
// Its zero value, but for Roster's authorities, is ready to use.
type Config struct {
	// Roster is the configuration of the roster records are merged into:
	// the authorities trusted.
	Roster device.RosterConfig
	// Refresh is how old the roster may be when a change of a device it
	// knows is verified (VerifyChange) before the source is looked at
	// again, so that a revocation kept by another server takes effect.
	// Zero means DefaultRefresh.
	Refresh time.Duration
	// CheckAge is how old the roster may be when CheckRevoked is asked
	// before the source is looked at again: the most a revocation kept
	// elsewhere takes to be enforced at a device's connection. Zero means
	// the source is looked at at every check (cheap for a file whose
	// modification time is compared).
	CheckAge time.Duration
	// LoadTimeout bounds a look at the source made by VerifyChange,
	// which has no context of its own. Zero means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// Now is the clock the roster's age is measured by; nil means
	// time.Now.
	Now func() time.Time
}

// Validate reports a configuration Open would refuse.
func (c Config) Validate() error {
	if c.Refresh < 0 || c.CheckAge < 0 || c.LoadTimeout < 0 {
		return fmt.Errorf("live roster: negative duration (refresh %v, check age %v, load timeout %v): %w",
			c.Refresh, c.CheckAge, c.LoadTimeout, ErrConfig)
	}
	if err := c.Roster.Validate(); err != nil {
		return fmt.Errorf("live roster: %w: %w", ErrConfig, err)
	}
	return nil
}

// ErrConfig is returned by Open and Config.Validate for a configuration
// that cannot be used.
var ErrConfig = errors.New("liveroster: invalid configuration")

// Roster is a device.Roster kept up to date with its Source while a
// server runs. Its embedded *device.Roster answers from the records last
// merged; VerifyChange and CheckRevoked look at the source again first
// when the rules of the package say so. It is safe for concurrent use.
type Roster struct {
	*device.Roster
	src Source
	cfg Config

	mu      sync.Mutex // held while the source is looked at
	version int64      // of the source as last merged
	read    time.Time  // when the source was last looked at with success
}

// Open returns a Roster holding every record src keeps now.
func Open(ctx context.Context, src Source, cfg Config) (*Roster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.LoadTimeout == 0 {
		cfg.LoadTimeout = DefaultLoadTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r, err := device.NewRoster(cfg.Roster)
	if err != nil {
		return nil, fmt.Errorf("live roster: %w", err)
	}
	l := &Roster{Roster: r, src: src, cfg: cfg}
	if err := l.Reload(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload merges the records the source kept since it was last looked at.
func (l *Roster) Reload(ctx context.Context) error {
	_, err := l.reload(ctx)
	return err
}

// reload is Reload, also reporting whether the source had new records.
func (l *Roster) reload(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, err := l.src.MergeRoster(ctx, l.Roster, l.version)
	if err != nil {
		return false, fmt.Errorf("load roster: %w", err)
	}
	changed := v != l.version
	l.version, l.read = v, l.cfg.Now()
	return changed, nil
}

// olderThan reports whether the source was last looked at more than d
// ago (always, for d zero).
func (l *Roster) olderThan(d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return d == 0 || l.cfg.Now().Sub(l.read) > d
}

// VerifyChange implements replica.Keys. It looks at the source first if
// it last did more than Config.Refresh ago, and again for a device the
// roster does not know (enrolled since it last looked), before it refuses
// the change. A failed look refuses the change with the error.
func (l *Roster) VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (string, error) {
	if l.olderThan(l.cfg.Refresh) {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.LoadTimeout)
		err := l.Reload(ctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("verify change of %s: %w", replicaID, err)
		}
	}
	clinic, err := l.Roster.VerifyChange(replicaID, chart, hash, sig)
	if !errors.Is(err, device.ErrUnknownDevice) {
		return clinic, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.LoadTimeout)
	defer cancel()
	if rerr := l.Reload(ctx); rerr != nil {
		return "", errors.Join(err, rerr)
	}
	// Verified again even if the source had nothing new: the roster may
	// have learnt the device meanwhile (another look, LearnSigner).
	return l.Roster.VerifyChange(replicaID, chart, hash, sig)
}

// CheckRevoked reports whether the roster holds a revocation of
// replicaID, looking at the source first if it last did more than
// Config.CheckAge ago. Its error matches device.ErrRevoked for a revoked
// device; a device the roster does not know, or whose enrolment expired,
// is not refused here (its certificate or signature is its caller's to
// check). A failed look at the source is returned as an error.
func (l *Roster) CheckRevoked(ctx context.Context, replicaID string) error {
	if l.olderThan(l.cfg.CheckAge) {
		if err := l.Reload(ctx); err != nil {
			return fmt.Errorf("check device %s: %w", replicaID, err)
		}
	}
	if _, err := l.Roster.Lookup(replicaID); errors.Is(err, device.ErrRevoked) {
		return err
	}
	return nil
}
