package web

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/record"
)

// Syncer syncs the device with its cloud: the app's own sync code.
type Syncer interface {
	// Status says whether the device can sync and what is waiting. It is
	// called for the status shown on every page, and cached by the server
	// until the next form is posted or sync ends: it should be cheap.
	Status(ctx context.Context) (SyncStatus, error)
	// Sync runs one sync with the cloud and says what it did; it calls
	// progress (never nil) as the sync moves, from its own goroutine. It
	// may be slow (a 2G link); it returns when ctx ends. An error that
	// matches ErrOffline says the cloud could not be reached; ErrRevoked,
	// that the cloud no longer accepts this device; ErrForked, that its
	// data folder is an old copy of itself; ErrNotConnected, that the
	// device has no cloud credential.
	Sync(ctx context.Context, progress func(SyncProgress)) (SyncResult, error)
}

// HandCarrier is implemented by a Syncer that also carries bundles by
// hand: a file on a USB stick (package transport/file) and relay bundles
// on a phone (package transport/relay). The sync page offers these when
// the Syncer has them. Each takes a folder on this device.
type HandCarrier interface {
	// ExportFile writes the bundle the cloud needs to a file in dir.
	ExportFile(ctx context.Context, dir string) (SyncResult, error)
	// ImportFile applies the bundle files in dir addressed to this
	// device; files refused are listed in SyncResult.Refused.
	ImportFile(ctx context.Context, dir string) (SyncResult, error)
	// HandToPhone exchanges relay bundles with a phone's folder: what
	// the phone carries for this device is opened, and what the cloud
	// needs is put on the phone.
	HandToPhone(ctx context.Context, dir string) (SyncResult, error)
}

// Errors a Syncer's methods wrap, for the app to explain in the user's
// language.
var (
	ErrOffline = errors.New("the cloud could not be reached")
	ErrRevoked = errors.New("this device has been revoked by the cloud's administrator")
	// ErrForked: the device's data folder is an old copy of itself
	// (replica.ErrForkedReplica): it no longer syncs until it is
	// recovered as a new device.
	ErrForked       = errors.New("this device's data folder is an old copy")
	ErrNotConnected = errors.New("this device is not connected to a cloud")
	// ErrNotAFolder: the folder given for a bundle is missing or not a
	// folder.
	ErrNotAFolder = errors.New("not a folder on this device")
)

// SyncStatus is what the status bar and the sync page show.
type SyncStatus struct {
	// Connected is false when the device has no cloud credential yet;
	// Advice then says what to do.
	Connected bool
	Cloud     string
	Advice    string
	// Pending is the changes waiting to be sent, LastSync the end of the
	// last sync with the cloud (zero: never).
	Pending  int
	LastSync time.Time
}

// Phase is a step of a sync.
type Phase string

// Phases of a sync, as SyncProgress reports them.
const (
	PhaseSending   Phase = "sending"
	PhaseReceiving Phase = "receiving"
	PhaseApplying  Phase = "applying"
	PhaseRetrying  Phase = "retrying"
	PhaseDone      Phase = "done"
)

// SyncProgress is how far a running sync is.
type SyncProgress struct {
	Phase Phase
	Round int
	// Done and Total are the bytes of the current transfer (Total 0:
	// unknown).
	Done, Total int64
	// RetryIn is the wait before the next try, in PhaseRetrying.
	RetryIn time.Duration
}

// SyncResult is what a sync or a hand carry did.
type SyncResult struct {
	Sent, Received, Charts int
	Bytes                  int64
	RoundTrips             int
	Duration               time.Duration
	// ChartIDs are the charts the sync changed here, when the courier
	// knows them; nil makes the server find them by their time of
	// writing.
	ChartIDs []string
	// Files counts the bundle files written or applied by a hand carry;
	// Path is the file written; Refused says, for each file refused, why.
	Files   int
	Path    string
	Refused []string
}

// Defaults of the background sync (Config.AutoSync, AutoSyncMaxWait,
// SyncTimeout).
const (
	DefaultAutoSync        = 5 * time.Minute
	DefaultAutoSyncMaxWait = time.Hour
	DefaultSyncTimeout     = 15 * time.Minute
)

// maxNews bounds the charts a sync's news lists (and loads).
const maxNews = 100

// jobKind is what a sync job does.
type jobKind string

const (
	jobCloud  jobKind = "cloud"
	jobExport jobKind = "export"
	jobImport jobKind = "import"
	jobPhone  jobKind = "phone"
)

// running is the sync job under way. Guarded by Server.mu.
type running struct {
	Kind       jobKind
	Background bool
	Started    time.Time
	Progress   SyncProgress
	Phases     []SyncProgress // each phase entered, in order
	done       chan struct{}  // closed when the job has ended
}

// outcome is what the last sync job did.
type outcome struct {
	// Seq numbers the jobs the server has run, from 1.
	Seq        int
	Kind       jobKind
	Background bool
	Ended      time.Time
	Result     SyncResult
	Err        error
	// News are the charts the job changed that now have conflicts to
	// settle or alerts (at most maxNews; Omitted more), and Counts what
	// each role is shown of them.
	News    []string
	Omitted int
	Counts  map[record.Role]newsCount
}

type newsCount struct{ Conflicts, Alerts int }

// syncState is the server's sync state. Guarded by Server.mu.
type syncState struct {
	job  *running
	last *outcome
	// online: 1 the last sync reached the cloud, -1 it could not, 0 not
	// tried since the server started.
	online  int
	tried   time.Time
	status  *SyncStatus // cached Syncer.Status; nil: ask again
	started bool        // the background sync runs
	seq     int         // jobs ended
	folder  string      // the folder last used for a hand carry
}

// jobFunc runs a job.
type jobFunc func(ctx context.Context, progress func(SyncProgress)) (SyncResult, error)

// claim marks a job of kind as running, unless one already is.
func (s *Server) claim(kind jobKind, background bool) *running {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sync.job != nil || s.closed {
		return nil
	}
	j := &running{Kind: kind, Background: background, Started: s.cfg.Now(), done: make(chan struct{})}
	s.sync.job = j
	return j
}

// runJob runs a claimed job to its end, bounded by Config.SyncTimeout and
// the server's life, and records what it did.
func (s *Server) runJob(j *running, run jobFunc) *outcome {
	ctx, cancel := context.WithTimeout(s.base, s.cfg.SyncTimeout)
	defer cancel()
	res, err := run(ctx, func(p SyncProgress) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if n := len(j.Phases); n == 0 || j.Phases[n-1].Phase != p.Phase || j.Phases[n-1].Round != p.Round {
			if len(j.Phases) < 100 {
				j.Phases = append(j.Phases, p)
			}
		}
		j.Progress = p
	})
	out := &outcome{Kind: j.Kind, Background: j.Background, Ended: s.cfg.Now(), Result: res, Err: err}
	if err == nil && res.Received > 0 {
		out.News, out.Omitted, out.Counts = s.news(ctx, j.Started, res.ChartIDs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(j.done)
	s.sync.job, s.sync.status = nil, nil
	s.sync.seq++
	out.Seq = s.sync.seq
	if !j.Background || err == nil || s.sync.last == nil || s.sync.last.Background {
		// A background failure does not hide what the user's own last
		// sync said.
		s.sync.last = out
	}
	if j.Kind == jobCloud {
		s.sync.tried = out.Ended
		switch {
		case err == nil:
			s.sync.online = 1
		case errors.Is(err, ErrOffline):
			s.sync.online = -1
		}
	}
	return out
}

// news finds the charts a sync changed (ids, or those written since
// since) that now have conflicts to settle or alerts, and counts them as
// each role is shown them.
func (s *Server) news(ctx context.Context, since time.Time, ids []string) ([]string, int, map[record.Role]newsCount) {
	if ids == nil {
		cs, err := s.r.Find(ctx, "", 0)
		if err != nil {
			s.log.Warn("find the charts a sync changed", "err", err)
			return nil, 0, nil
		}
		from := since.Truncate(time.Millisecond)
		for _, c := range cs {
			if !c.Updated.Before(from) {
				ids = append(ids, c.ID)
			}
		}
	}
	slices.Sort(ids)
	policy, err := s.r.ReadPolicy(ctx, s.cfg.Clinic)
	if err != nil {
		s.log.Warn("read policy for a sync's news", "err", err)
		return nil, 0, nil
	}
	counts := map[record.Role]newsCount{}
	var news []string
	omitted := 0
	for _, id := range ids {
		if len(news) == maxNews {
			omitted++
			continue
		}
		v, err := s.r.Chart(ctx, id)
		if err != nil || (len(v.Alerts) == 0 && !slices.ContainsFunc(v.Conflicts, open)) {
			continue
		}
		news = append(news, id)
		for _, role := range record.Roles() {
			rv := policy.Redact(v, role)
			c := counts[role]
			c.Alerts += len(rv.Alerts)
			for _, x := range rv.Conflicts {
				if open(x) {
					c.Conflicts++
				}
			}
			counts[role] = c
		}
	}
	return news, omitted, counts
}

// open reports whether a conflict waits for someone to settle it.
func open(c record.Conflict) bool { return !c.Automatic }

// Start starts the background sync: while ctx lasts and until Close, the
// server syncs with the cloud every Config.AutoSync when the device is
// connected, and after a failure waits twice as long each time, up to
// Config.AutoSyncMaxWait. A sync the user started is never run twice at
// once: a background sync waits for its next turn. The first failure in a
// row is logged as a warning, the others at debug level. Nothing starts
// without a Syncer or with a negative AutoSync.
//
// With an Unlocker, Start also starts the sweep of idle sessions
// (Sweep, every SweepEvery), and the background sync runs only while the
// data is open: while some session is logged in.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("web: Start after Close")
	}
	if s.sync.started {
		return errors.New("web: background sync already started")
	}
	s.sync.started = true
	if s.cfg.Unlocker != nil {
		s.wg.Add(1)
		go s.sweeper()
	}
	if s.cfg.Sync == nil || s.cfg.AutoSync < 0 {
		return nil
	}
	s.wg.Add(1)
	go s.autoSync(ctx)
	return nil
}

// Close stops the background sync and any sync under way, and waits for
// them to end. The server answers no sync request after it.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return nil
}

// autoSync is the background sync's loop: one sync per turn, each turn
// at least AutoSync after the last, until ctx ends or the server closes.
func (s *Server) autoSync(ctx context.Context) {
	defer s.wg.Done()
	failures := 0
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.base.Done():
			return
		case <-s.cfg.After(wait):
		}
		wait = s.cfg.AutoSync
		out, stop := s.autoSyncTurn(ctx)
		if stop {
			return
		}
		if out == nil {
			continue
		}
		switch {
		case out.Err == nil:
			if failures > 0 {
				s.log.Info("background sync reached the cloud again", "failures", failures)
			}
			failures = 0
		case errors.Is(out.Err, ErrRevoked), errors.Is(out.Err, ErrForked), errors.Is(out.Err, ErrNotConnected):
			s.log.Warn("background sync stopped", "err", out.Err)
			return
		case errors.Is(out.Err, ErrLocked):
			// Locked while the sync began: the next turn tries again.
		default:
			failures++
			wait = backoff(s.cfg.AutoSync, s.cfg.AutoSyncMaxWait, failures)
			if failures == 1 {
				s.log.Warn("background sync failed; trying again later", "err", out.Err, "wait", wait)
			} else {
				s.log.Debug("background sync failed again", "err", out.Err, "failures", failures, "wait", wait)
			}
		}
	}
}

// autoSyncTurn runs one background sync, if the device is connected, the
// user runs none and the data is open (some session is logged in; it
// stays open until the sync ends). It returns nil when it ran none.
func (s *Server) autoSyncTurn(ctx context.Context) (out *outcome, stop bool) {
	s.data.RLock()
	defer s.data.RUnlock()
	if s.r == nil {
		return nil, false // locked: no one logged in holds the key
	}
	st, err := s.status(ctx)
	if err != nil || !st.Connected {
		return nil, false // nothing to try until the device is connected
	}
	j := s.claim(jobCloud, true)
	if j == nil {
		return nil, false // the user's sync runs now
	}
	return s.runJob(j, s.cfg.Sync.Sync), false
}

// ErrLocked: a sync found the data locked (no one logged in).
var ErrLocked = errors.New("web: the data is locked: no one is logged in")

// backoff is the wait after n failures in a row: every, doubled for each
// failure after the first, at most max.
func backoff(every, max time.Duration, n int) time.Duration {
	w := every
	for i := 1; i < n && w < max; i++ {
		w *= 2
	}
	return min(w, max)
}

// status is the Syncer's status, cached until a form is posted or a sync
// ends.
func (s *Server) status(ctx context.Context) (SyncStatus, error) {
	s.mu.Lock()
	if c := s.sync.status; c != nil {
		s.mu.Unlock()
		return *c, nil
	}
	s.mu.Unlock()
	st, err := s.cfg.Sync.Status(ctx)
	if err != nil {
		return st, err
	}
	s.mu.Lock()
	s.sync.status = &st
	s.mu.Unlock()
	return st, nil
}

// forgetStatus drops the cached status: a write changes what is waiting.
func (s *Server) forgetStatus() {
	s.mu.Lock()
	s.sync.status = nil
	s.mu.Unlock()
}

// bar is the sync status every page shows to a logged-in user.
type bar struct {
	// State is "running", "online", "offline", "unknown" or
	// "unconnected".
	State     string
	Pending   int
	LastSync  time.Time
	Conflicts int
	Alerts    int
}

// statusBar says the device's sync state for a user of role.
func (s *Server) statusBar(ctx context.Context, role record.Role) *bar {
	if s.cfg.Sync == nil {
		return nil
	}
	b := &bar{State: "unknown"}
	st, err := s.status(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.sync.job != nil:
		b.State = "running"
	case err == nil && !st.Connected:
		b.State = "unconnected"
	case s.sync.online > 0:
		b.State = "online"
	case s.sync.online < 0:
		b.State = "offline"
	}
	b.Pending, b.LastSync = st.Pending, st.LastSync
	if l := s.sync.last; l != nil {
		c := l.Counts[role]
		b.Conflicts, b.Alerts = c.Conflicts, c.Alerts
	}
	return b
}

// ---- pages ----

// syncData is the sync page.
type syncData struct {
	Enabled bool
	Hand    bool
	Status  SyncStatus
	Message string
	Job     *running
	Last    *outcome
	Error   string
	News    []newsChart
	Omitted int
	Folder  string
	Tried   time.Time
	Online  int
}

// newsChart is a chart the last sync changed, as the user may see it.
type newsChart struct {
	ID, Name  string
	Conflicts int
	Alerts    []string
}

func (s *Server) syncPage(w http.ResponseWriter, r *http.Request, q *request) {
	d := syncData{Enabled: s.cfg.Sync != nil}
	if s.cfg.Sync == nil {
		s.render(w, r, q, http.StatusOK, "sync", tr(q.lang, "sync.title"), d)
		return
	}
	_, d.Hand = s.cfg.Sync.(HandCarrier)
	st, err := s.status(r.Context())
	if err != nil {
		d.Message = err.Error()
	}
	d.Status = st
	s.mu.Lock()
	if j := s.sync.job; j != nil {
		cp := *j
		cp.Phases = slices.Clone(j.Phases)
		d.Job = &cp
	}
	d.Last, d.Folder, d.Tried, d.Online = s.sync.last, s.sync.folder, s.sync.tried, s.sync.online
	s.mu.Unlock()
	if d.Folder == "" {
		d.Folder = s.cfg.Folder
	}
	if d.Last != nil {
		if d.Last.Err != nil {
			d.Error = s.explain(q.lang, d.Last.Kind, d.Last.Err)
		}
		for _, id := range d.Last.News {
			v, err := s.view(r, q, id)
			if err != nil {
				continue
			}
			n := newsChart{ID: id, Name: v.Patient.FullName()}
			for _, c := range v.Conflicts {
				if open(c) {
					n.Conflicts++
				}
			}
			for _, a := range v.Alerts {
				n.Alerts = append(n.Alerts, a.Message)
			}
			if n.Conflicts > 0 || len(n.Alerts) > 0 {
				d.News = append(d.News, n)
			}
		}
		d.Omitted = d.Last.Omitted
	}
	s.render(w, r, q, http.StatusOK, "sync", tr(q.lang, "sync.title"), d)
}

// explain says why a sync job failed, in the user's language.
func (s *Server) explain(lang string, kind jobKind, err error) string {
	key := "sync.failed"
	switch {
	case errors.Is(err, ErrOffline):
		key = "sync.failed.offline"
	case errors.Is(err, ErrRevoked):
		key = "sync.failed.revoked"
	case errors.Is(err, ErrForked):
		key = "sync.failed.forked"
	case errors.Is(err, ErrNotConnected):
		key = "sync.failed.unconnected"
	case errors.Is(err, ErrNotAFolder):
		key = "sync.failed.folder"
	case errors.Is(err, context.DeadlineExceeded):
		key = "sync.failed.timeout"
	}
	return tr(lang, key) + " " + tr(lang, "sync.details", err.Error())
}

// syncPost starts a sync with the cloud and shows the sync page, which
// follows it.
func (s *Server) syncPost(w http.ResponseWriter, r *http.Request, q *request) {
	if s.cfg.Sync == nil {
		s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "sync.disabled"))
		return
	}
	s.startJob(w, r, q, jobCloud, s.cfg.Sync.Sync)
}

// handPost starts a hand carry: export a file, import files, or exchange
// with a phone, in the folder the form names.
func (s *Server) handPost(w http.ResponseWriter, r *http.Request, q *request) {
	hc, ok := s.cfg.Sync.(HandCarrier)
	if !ok {
		s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "sync.hand.disabled"))
		return
	}
	kind := jobKind(r.PathValue("kind"))
	var carry func(context.Context, string) (SyncResult, error)
	switch kind {
	case jobExport:
		carry = hc.ExportFile
	case jobImport:
		carry = hc.ImportFile
	case jobPhone:
		carry = hc.HandToPhone
	default:
		s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "error.noform"))
		return
	}
	dir := strings.TrimSpace(r.PostFormValue("folder"))
	if dir == "" || !filepath.IsAbs(dir) {
		s.setFlash(q.sess, tr(q.lang, "sync.folder.invalid"))
		http.Redirect(w, r, "/sync#hand", http.StatusSeeOther)
		return
	}
	dir = filepath.Clean(dir)
	s.mu.Lock()
	s.sync.folder = dir
	s.mu.Unlock()
	s.startJob(w, r, q, kind, func(ctx context.Context, progress func(SyncProgress)) (SyncResult, error) {
		return carry(ctx, dir)
	})
}

// startJob runs a job in the background for the user and sends them to
// the sync page, which follows it; if a sync already runs, it says so.
func (s *Server) startJob(w http.ResponseWriter, r *http.Request, q *request, kind jobKind, run jobFunc) {
	j := s.claim(kind, false)
	if j == nil {
		s.setFlash(q.sess, tr(q.lang, "sync.busy"))
		http.Redirect(w, r, "/sync", http.StatusSeeOther)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// The data stays open until the job ends.
		s.data.RLock()
		defer s.data.RUnlock()
		if s.r == nil {
			run = func(context.Context, func(SyncProgress)) (SyncResult, error) { return SyncResult{}, ErrLocked }
		}
		s.runJob(j, run)
	}()
	http.Redirect(w, r, "/sync", http.StatusSeeOther)
}
