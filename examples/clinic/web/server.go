package web

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device/login"
	devsession "github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

//go:embed templates/*.html static/*
var files embed.FS

// DefaultIdleTimeout is how long a session lasts without a request.
const DefaultIdleTimeout = 15 * time.Minute

// MaxSessions bounds the sessions (logged in or at the login page) kept in
// memory; past it the least recently used is dropped.
const MaxSessions = 1000

// cookieName is the session cookie's name.
const cookieName = "clinic_session"

// maxForm bounds a request body: every form of the app is far smaller.
const maxForm = 64 << 10

// Config is what the web app works on. Replica, Clinic, Device and Guard
// are required.
type Config struct {
	// Replica is the device's replica, open. With an Unlocker it is
	// nil: the Unlocker opens it at a login.
	Replica *replica.Replica
	// Unlocker, if set, opens the device's encrypted data at a login
	// and closes it when no session remains (see Unlocker).
	Unlocker Unlocker
	// Clinic is the device's clinic: its roster holds the users who may
	// log in. Device is the device's name, recorded on every change.
	Clinic, Device string
	// Guard checks passwords and locks out a user after failed logins.
	Guard *login.Guard
	// IdleTimeout logs a session out after this long without a request
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Sync runs the sync page and the background sync; nil shows that
	// this device does not sync. If it is also a HandCarrier, the sync
	// page offers USB files and relay bundles.
	Sync Syncer
	// AutoSync is how often the background sync (Start) syncs with the
	// cloud (default DefaultAutoSync); negative turns it off. After
	// failures it waits longer, up to AutoSyncMaxWait (default
	// DefaultAutoSyncMaxWait).
	AutoSync, AutoSyncMaxWait time.Duration
	// SyncTimeout bounds one sync or hand carry (default
	// DefaultSyncTimeout).
	SyncTimeout time.Duration
	// After is the background sync's timer (default time.After).
	After func(time.Duration) <-chan time.Time
	// Folder is the folder first offered for USB files and a phone's
	// relay bundles (e.g. where sticks are mounted); empty offers none.
	Folder string
	// SettingsFile keeps each user's settings on this device (their
	// language), as JSON; empty keeps them in memory only.
	SettingsFile string
	// Language is the language of the login page and of users who have
	// not chosen one (default DefaultLanguage), one of Languages.
	Language string
	// Location is the time zone times are shown in (default time.Local).
	Location *time.Location
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Validate says what is missing from c.
func (c Config) Validate() error {
	switch {
	case c.Replica == nil && c.Unlocker == nil:
		return errors.New("web: Config.Replica (or Config.Unlocker) is required")
	case c.Replica != nil && c.Unlocker != nil:
		return errors.New("web: give Config.Replica or Config.Unlocker, not both")
	case c.Clinic == "" || c.Device == "":
		return errors.New("web: Config.Clinic and Config.Device are required")
	case c.Guard == nil:
		return errors.New("web: Config.Guard is required")
	case c.IdleTimeout < 0:
		return errors.New("web: Config.IdleTimeout is negative")
	case c.AutoSyncMaxWait < 0 || c.SyncTimeout < 0:
		return errors.New("web: Config.AutoSyncMaxWait and Config.SyncTimeout must not be negative")
	case c.Language != "" && !knownLanguage(c.Language):
		return fmt.Errorf("web: Config.Language %q is not one of the app's languages", c.Language)
	}
	return nil
}

// Server is the web app, an http.Handler. It is safe for concurrent use.
// It owns the goroutines of syncs it runs (Start, and syncs users start):
// Close stops them and waits for them.
type Server struct {
	cfg Config
	// data guards r and policy.Users, which an Unlocker opens and
	// closes: a request of a logged-in user and a sync hold it for
	// reading, opening and closing the data for writing. It is taken
	// before mu, never while mu is held.
	data     sync.RWMutex
	r        *replica.Replica
	policy   devsession.Policy // who may log in, and stay logged in
	mux      *http.ServeMux
	pages    map[string]*template.Template // by language "/" page
	log      *slog.Logger
	settings *settingsStore

	base context.Context // ends at Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*session
	sync     syncState
	closed   bool
}

// session is one browser's session: before login (user empty) it only
// carries the login form's CSRF token.
type session struct {
	id, csrf string
	user     string
	seen     time.Time
	flash    string
}

// New makes the web app.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AutoSync == 0 {
		cfg.AutoSync = DefaultAutoSync
	}
	if cfg.AutoSyncMaxWait == 0 {
		cfg.AutoSyncMaxWait = DefaultAutoSyncMaxWait
	}
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Language == "" {
		cfg.Language = DefaultLanguage
	}
	settings, err := openSettings(cfg.SettingsFile)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, r: cfg.Replica, log: cfg.Logger,
		policy: devsession.Policy{Clinic: cfg.Clinic, Device: cfg.Device, Guard: cfg.Guard, Idle: cfg.IdleTimeout}, sessions: map[string]*session{}, pages: map[string]*template.Template{}, settings: settings}
	if cfg.Replica != nil {
		s.policy.Users = cfg.Replica
	}
	if err := s.parse(); err != nil {
		return nil, err
	}
	s.base, s.stop = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

func (s *Server) parse() error {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return err
	}
	for _, l := range Languages {
		for _, n := range names {
			if n == "templates/layout.html" {
				continue
			}
			t, err := template.New("").Funcs(s.funcs(l.Code)).ParseFS(files, "templates/layout.html", n)
			if err != nil {
				return fmt.Errorf("web: parse %s: %w", n, err)
			}
			s.pages[l.Code+"/"+n[len("templates/"):len(n)-len(".html")]] = t
		}
	}
	return nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.loginPost)
	m.HandleFunc("POST /logout", s.user(s.logout))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/patients", http.StatusSeeOther) })
	m.HandleFunc("GET /patients", s.user(s.patients))
	m.HandleFunc("GET /register", s.user(s.registerPage))
	m.HandleFunc("POST /register", s.user(s.registerPost))
	m.HandleFunc("GET /chart/{id}", s.user(s.chartPage))
	m.HandleFunc("POST /chart/{id}/settle", s.user(s.settle))
	m.HandleFunc("GET /chart/{id}/merge", s.user(s.mergePage))
	m.HandleFunc("POST /chart/{id}/merge", s.user(s.mergePost))
	m.HandleFunc("GET /chart/{id}/unmerge", s.user(s.unmergePage))
	m.HandleFunc("POST /chart/{id}/unmerge", s.user(s.unmergePost))
	m.HandleFunc("GET /chart/{id}/{form}", s.user(s.formPage))
	m.HandleFunc("POST /chart/{id}/{form}", s.user(s.formPost))
	m.HandleFunc("GET /sync", s.user(s.syncPage))
	m.HandleFunc("POST /sync", s.user(s.syncPost))
	m.HandleFunc("POST /sync/{kind}", s.user(s.handPost))
	m.HandleFunc("GET /settings", s.user(s.settingsPage))
	m.HandleFunc("POST /settings", s.user(s.settingsPost))
	s.mux = m
}

// ServeHTTP serves the app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Nothing comes from elsewhere, nothing runs inline, no other site
	// frames the app or receives its forms.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !loopbackHost(r.Host) {
		// A page from another site can point a name it controls at
		// 127.0.0.1 (DNS rebinding) and then read this app's pages as
		// its own: only the loopback names this app is served under are
		// answered.
		http.Error(w, "This app answers only on 127.0.0.1 or localhost.", http.StatusMisdirectedRequest)
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		// A form may write: what waits to be sent is asked again.
		defer s.forgetStatus()
	}
	s.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a request's Host names this machine's
// loopback interface: localhost, or a loopback IP address, with any port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// request is one request of a logged-in user.
type request struct {
	sess   *session
	author record.Author
	policy record.ReadPolicy
	lang   string // the user's language
}

// user wraps a handler for logged-in users: it finds the session, ends
// it when idle or when the roster no longer lets its user in, checks the
// CSRF token of a POST, and reads the user's role and read policy.
func (s *Server) user(h func(w http.ResponseWriter, r *http.Request, q *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Unlocker != nil {
			// A logout, or a session found idle, may leave no one
			// logged in: the data is locked then.
			defer s.lockIfNoSession()
		}
		s.data.RLock()
		defer s.data.RUnlock()
		sess, idle := s.lookup(r)
		if sess != nil && sess.user != "" && s.r == nil {
			// The data was locked since this session began.
			s.drop(sess.id)
			sess, idle = nil, true
		}
		if sess == nil || sess.user == "" {
			if r.Method == http.MethodPost {
				http.Error(w, "Your session has ended: log in again.", http.StatusForbidden)
				return
			}
			to := "/login"
			if idle {
				to += "?idle=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !s.checkCSRF(r, sess) {
			http.Error(w, "This form has expired or did not come from this app: nothing was changed. Go back, reload the page and try again.", http.StatusForbidden)
			return
		}
		au, err := s.author(r.Context(), sess.user)
		if err != nil {
			s.drop(sess.id)
			s.errorPage(w, r, nil, http.StatusForbidden, err.Error())
			return
		}
		p, err := s.r.ReadPolicy(r.Context(), s.cfg.Clinic)
		if err != nil {
			s.fail(w, r, nil, err)
			return
		}
		h(w, r, &request{sess: sess, author: au, policy: p, lang: s.language(au.UserID)})
	}
}

// author is the session's user as the roster has them now: a user
// disabled or removed since logging in is logged out, and a changed role
// applies at once.
func (s *Server) author(ctx context.Context, id string) (record.Author, error) {
	au, err := s.policy.Author(ctx, id)
	switch {
	case errors.Is(err, devsession.ErrRemoved):
		return record.Author{}, fmt.Errorf("%s is no longer on the clinic's users: you were logged out", id)
	case errors.Is(err, devsession.ErrDisabled):
		return record.Author{}, fmt.Errorf("%s's account was disabled by an administrator: you were logged out", id)
	}
	return au, err
}

// newID returns a random 32-byte ID in hex.
func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// lookup finds the request's session and marks it seen. idle is true when
// the cookie named a session that ended for lack of use.
func (s *Server) lookup(r *http.Request) (sess *session, idle bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess = s.sessions[c.Value]
	if sess == nil {
		return nil, false
	}
	if devsession.Expired(sess.seen, now, s.cfg.IdleTimeout) {
		delete(s.sessions, sess.id)
		return nil, sess.user != ""
	}
	sess.seen = now
	return sess, false
}

// start makes a session, for user (empty before login), and sets its
// cookie.
func (s *Server) start(w http.ResponseWriter, user string) *session {
	now := s.cfg.Now()
	sess := &session{id: newID(), csrf: newID(), user: user, seen: now}
	s.mu.Lock()
	for id, o := range s.sessions {
		if now.Sub(o.seen) > s.cfg.IdleTimeout {
			delete(s.sessions, id)
		}
	}
	// Bounded: the least recently used session goes first.
	for len(s.sessions) >= MaxSessions {
		var oldest *session
		for _, o := range s.sessions {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.sessions, oldest.id)
	}
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: sess.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return sess
}

func (s *Server) drop(id string) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

// checkCSRF compares the form's token with the session's.
func (s *Server) checkCSRF(r *http.Request, sess *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// setFlash keeps a message for the session's next page.
func (s *Server) setFlash(sess *session, msg string) {
	s.mu.Lock()
	sess.flash = msg
	s.mu.Unlock()
}

func (s *Server) takeFlash(sess *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = ""
	return f
}

// page is what every template receives.
type page struct {
	Title  string
	User   *record.Author
	CSRF   string
	Flash  string
	Error  string
	Device string
	Data   any
	// Lang is the page's language; Bar the sync status shown at the top
	// (nil: none); Refresh, when not zero, reloads the page after that
	// many seconds (a sync under way, followed without JavaScript).
	Lang    string
	Bar     *bar
	Refresh int
}

// language is a user's language.
func (s *Server) language(user string) string {
	if l := s.settings.get(user).Language; l != "" {
		return l
	}
	return s.cfg.Language
}

// render writes a page in the user's language (the device's before
// login).
func (s *Server) render(w http.ResponseWriter, r *http.Request, q *request, status int, name, title string, data any) {
	s.renderIn(w, r, q, s.cfg.Language, status, name, title, data)
}

func (s *Server) renderIn(w http.ResponseWriter, r *http.Request, q *request, lang string, status int, name, title string, data any) {
	if q != nil {
		lang = q.lang
	}
	t := s.pages[lang+"/"+name]
	if t == nil {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p := page{Title: title, Data: data, Device: s.cfg.Device, Lang: lang}
	if q != nil {
		au := q.author
		p.User, p.CSRF, p.Flash = &au, q.sess.csrf, s.takeFlash(q.sess)
		p.Bar = s.statusBar(r.Context(), au.Role)
		if p.Bar != nil && p.Bar.State == "running" && name == "sync" {
			p.Refresh = 2
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r) {
		// A chart's page is mostly repeated markup: gzip makes a
		// 200-entry chart a few tenths of its size for a phone's browser.
		w.Header().Set("Content-Encoding", "gzip")
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		defer zw.Close()
		out = zw
	}
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(out, "layout", p); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

// acceptsGzip reports whether the browser takes gzip-encoded pages.
func acceptsGzip(r *http.Request) bool {
	for _, e := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(e), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// errorPage shows a message in plain words.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, q *request, status int, msg string) {
	s.render(w, r, q, status, "error", http.StatusText(status), msg)
}

// fail shows an unexpected error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, q *request, err error) {
	s.log.Error("request", "path", r.URL.Path, "err", err)
	lang := s.cfg.Language
	if q != nil {
		lang = q.lang
	}
	s.errorPage(w, r, q, http.StatusInternalServerError, tr(lang, "error.internal", err.Error()))
}

// forbidden refuses an action the user's role may not take.
func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, q *request, sec record.Section) {
	s.errorPage(w, r, q, http.StatusForbidden, tr(q.lang, "error.forbidden", q.author.Role, sec, mayChange(sec)))
}

// ---- login ----

type loginData struct {
	User      string
	Message   string
	CSRF      string
	Languages []Language
}

// loginLanguage is the login page's language: the one the page's link
// or form names, else the browser's, else the device's.
func (s *Server) loginLanguage(r *http.Request) string {
	if l := r.FormValue("lang"); knownLanguage(l) {
		return l
	}
	if l := acceptLanguage(r.Header.Get("Accept-Language")); l != "" {
		return l
	}
	return s.cfg.Language
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	sess, idle := s.lookup(r)
	if sess != nil && sess.user != "" {
		http.Redirect(w, r, "/patients", http.StatusSeeOther)
		return
	}
	if sess == nil {
		sess = s.start(w, "")
	}
	lang := s.loginLanguage(r)
	d := loginData{CSRF: sess.csrf, Languages: Languages}
	if idle || r.URL.Query().Get("idle") != "" {
		d.Message = tr(lang, "login.idle", minutes(lang, s.cfg.IdleTimeout))
	}
	s.renderIn(w, r, nil, lang, http.StatusOK, "login", tr(lang, "login.title"), d)
}

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.lookup(r)
	if sess == nil || !s.checkCSRF(r, sess) {
		http.Error(w, "This login form has expired: go back, reload the page and log in again.", http.StatusForbidden)
		return
	}
	lang := s.loginLanguage(r)
	user, pw := r.PostFormValue("user"), r.PostFormValue("password")
	again := func(msg string) {
		s.renderIn(w, r, nil, lang, http.StatusUnauthorized, "login", tr(lang, "login.title"), loginData{User: user, Message: msg, CSRF: sess.csrf, Languages: Languages})
	}
	if user == "" || pw == "" {
		again(tr(lang, "login.empty"))
		return
	}
	u, err := s.login(r.Context(), user, pw)
	var wp *devsession.WrongPasswordError
	var lo *login.LockedOutError
	switch {
	case errors.Is(err, ErrNoKey):
		again(tr(lang, "login.nokey", user, user))
		return
	case errors.Is(err, devsession.ErrNoUsers):
		again(tr(lang, "login.nousers"))
		return
	case errors.As(err, &lo):
		again(tr(lang, "login.locked", user, lo.Until.In(s.cfg.Location).Format("15:04")))
		return
	case errors.As(err, &wp):
		again(tr(lang, "login.wrong", wp.Left, user))
		return
	case errors.Is(err, devsession.ErrDisabled):
		again(tr(lang, "login.disabled", user))
		return
	case err != nil:
		s.fail(w, r, nil, err)
		return
	}
	// A new session ID at login: one known before it is worth nothing.
	s.drop(sess.id)
	s.start(w, u.UserID)
	s.log.Info("login", "user", u.UserID)
	http.Redirect(w, r, "/patients", http.StatusSeeOther)
}

// login checks a login: with an Unlocker, the data is opened with the
// user's password first (or the password checked against the keys of
// the data already open), then the roster decides. The data opened for
// a login the roster refuses is closed again, unless a session holds it.
func (s *Server) login(ctx context.Context, user, password string) (record.Author, error) {
	if s.cfg.Unlocker == nil {
		return s.policy.Login(ctx, user, password)
	}
	s.data.Lock()
	defer s.data.Unlock()
	rep, err := s.cfg.Unlocker.Unlock(ctx, user, password)
	if err != nil {
		return record.Author{}, err
	}
	s.r, s.policy.Users = rep, rep
	u, err := s.policy.Login(ctx, user, password)
	if err == nil {
		err = s.cfg.Unlocker.LoggedIn(ctx, user, password)
	}
	if err != nil {
		if s.loggedIn() == 0 {
			s.lockData()
		}
		return record.Author{}, err
	}
	return u, nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, q *request) {
	s.drop(q.sess.id)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func minutes(lang string, d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return plural(lang, int(d/time.Minute), "minutes")
	}
	return d.String()
}
