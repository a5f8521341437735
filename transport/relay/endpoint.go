package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
)

// Config tunes an Endpoint. The zero value works.
type Config struct {
	// Peers are the replicas this endpoint sends bundles to (a village
	// clinic's hub). Senders of bundles it collects are added, so that
	// their acknowledgements go back.
	Peers []string
	// Lifetime is how long a bundle it sends may travel (default 30 days).
	// A bundle of changes not acknowledged within it is sent afresh.
	Lifetime time.Duration
	// Node configures the endpoint's own relay node; its Now and Logger
	// default to the endpoint's.
	Node NodeConfig
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Lifetime < 0 {
		return errors.New("relay config: lifetime must not be negative")
	}
	for _, p := range c.Peers {
		if _, err := hexID(p); err != nil {
			return fmt.Errorf("relay config: peer: %w", err)
		}
	}
	return c.Node.Validate()
}

func (c Config) withDefaults() Config {
	if c.Lifetime == 0 {
		c.Lifetime = 30 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Node.Now == nil {
		c.Node.Now = c.Now
	}
	if c.Node.Logger == nil {
		c.Node.Logger = c.Logger
	}
	return c
}

// Endpoint is a replica's end of relay carrying. It seals the bundles its
// replica makes for peers into its own relay node (its outbox, which
// carriers copy from) and opens the bundles addressed to it that carriers
// left there, acknowledging each. It is safe for concurrent use.
type Endpoint struct {
	r      *replica.Replica
	id     *device.Identity
	roster *device.Roster
	node   *Node
	cfg    Config
	log    *slog.Logger
	state  string // path of the state file

	mu sync.Mutex
	st endpointState
}

// endpointState is what an endpoint remembers between runs, in
// "endpoint.state" beside its node: bundles it has collected or refused
// (until they expire, after which any copy is refused as expired anyway),
// the last bundle of changes sent to each peer, and the peers it learnt.
type endpointState struct {
	Seen  map[string]int64      `json:"seen"` // bundle key (Header.Key) → its expiry, Unix seconds
	Sent  map[string]sentBundle `json:"sent"` // peer → last bundle of changes sent
	Peers []string              `json:"peers,omitempty"`
}

type sentBundle struct {
	ID      string `json:"id"`
	Upto    uint64 `json:"upto"`
	Head    uint64 `json:"head"`
	Ack     uint64 `json:"ack"`
	Changes int    `json:"changes"`
	Expires int64  `json:"expires"`
	Acked   bool   `json:"acked,omitempty"`
}

const (
	stateKind     = 'Z'
	stateVersion  = 1
	maxStateBytes = 64 << 20
)

// OpenEndpoint opens the relay endpoint of replica r in dir, creating it
// if needed: its relay node is dir/node, its state dir/endpoint.state. id
// must be r's device identity; roster verifies senders.
func OpenEndpoint(dir string, r *replica.Replica, id *device.Identity, roster *device.Roster, cfg Config) (*Endpoint, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if id.ReplicaID() != r.ID() {
		return nil, fmt.Errorf("open relay endpoint: device keys are for replica %s, not %s", id.ReplicaID(), r.ID())
	}
	cfg = cfg.withDefaults()
	node, err := OpenNode(filepath.Join(dir, "node"), roster, cfg.Node)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{r: r, id: id, roster: roster, node: node, cfg: cfg, log: cfg.Logger.With("replica", r.ID()), state: filepath.Join(dir, "endpoint.state")}
	if err := e.load(); err != nil {
		node.Close()
		return nil, err
	}
	return e, nil
}

// Node returns the endpoint's own relay node, which carriers exchange
// with (Carry, Exchange).
func (e *Endpoint) Node() *Node { return e.node }

// Close closes the endpoint's node. The replica stays open.
func (e *Endpoint) Close() error { return e.node.Close() }

func (e *Endpoint) load() error {
	e.st = endpointState{Seen: map[string]int64{}, Sent: map[string]sentBundle{}}
	f, err := os.Open(e.state)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load relay state: %w", err)
	}
	defer f.Close()
	data, err := readBounded(f, maxStateBytes+64)
	if err != nil {
		return fmt.Errorf("load relay state: %w", err)
	}
	st, err := decodeState(data)
	if err != nil {
		return fmt.Errorf("load relay state %s: %w", e.state, err)
	}
	e.st = st
	return nil
}

// encodeState returns the state file's bytes: a wire frame of kind 'Z'
// holding the state as JSON.
func encodeState(st endpointState) ([]byte, error) {
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return wire.Encode(stateKind, stateVersion, body), nil
}

// decodeState decodes a state file (encodeState). Errors match
// ErrMalformed, ErrVersion or ErrTooLarge.
func decodeState(data []byte) (endpointState, error) {
	st := endpointState{}
	body, err := decodeFrame(data, stateKind, stateVersion, maxStateBytes)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return endpointState{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	if st.Seen == nil {
		st.Seen = map[string]int64{}
	}
	if st.Sent == nil {
		st.Sent = map[string]sentBundle{}
	}
	if len(st.Peers) == 0 {
		st.Peers = nil // as encodeState leaves it out
	}
	return st, nil
}

// save writes the state atomically, forgetting bundles that have expired.
// e.mu is held.
func (e *Endpoint) save() error {
	now := e.cfg.Now().Unix()
	for id, exp := range e.st.Seen {
		if exp <= now {
			delete(e.st.Seen, id)
		}
	}
	data, err := encodeState(e.st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(e.state, data, atomicfile.Options{TempPattern: "." + filepath.Base(e.state) + tmpPrefix + "*"}); err != nil {
		return fmt.Errorf("save relay state: %w", err)
	}
	return nil
}

// Seal returns a relay bundle carrying the bundle peer needs now, signed
// and encrypted to peer, without storing or recording it. Send is what
// normally calls it; tests capture a bundle with it.
func (e *Endpoint) Seal(ctx context.Context, peer string) ([]byte, error) {
	raw, _, _, err := e.seal(ctx, peer)
	return raw, err
}

func (e *Endpoint) seal(ctx context.Context, peer string) ([]byte, replica.Outgoing, *replica.Bundle, error) {
	out, err := e.r.MakeBundle(ctx, peer)
	if err != nil {
		return nil, out, nil, err
	}
	b, err := replica.DecodeBundle(out.Data)
	if err != nil {
		return nil, out, nil, fmt.Errorf("seal bundle for %s: %w", peer, err)
	}
	raw, err := e.sealData(peer, out.Data)
	return raw, out, b, err
}

// SealBundle returns a relay bundle carrying data, a replica bundle,
// signed by this endpoint's device and encrypted to peer. Tests use it to
// send what a broken or lying device would, through the whole courier.
func (e *Endpoint) SealBundle(peer string, data []byte) ([]byte, error) {
	return e.sealData(peer, data)
}

func (e *Endpoint) sealData(peer string, data []byte) ([]byte, error) {
	return Seal(e.id, e.roster, peer, data, e.cfg.Now(), e.cfg.Lifetime)
}

// Send puts in the endpoint's node a new bundle for peer if peer needs
// one: when there are changes or acknowledgements it has not been sent
// since the last bundle, or when the last bundle's lifetime ran out
// before its acknowledgement arrived. Bundles already in the node stay
// there until acknowledged or expired, so a lost carrier loses nothing.
func (e *Endpoint) Send(ctx context.Context, peer string) (transport.Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.send(ctx, peer)
}

func (e *Endpoint) send(ctx context.Context, peer string) (transport.Stats, error) {
	var st transport.Stats
	raw, out, b, err := e.seal(ctx, peer)
	if err != nil {
		return st, err
	}
	now := e.cfg.Now().Unix()
	last, had := e.st.Sent[peer]
	same := had && last.Upto == b.Upto && last.Head == b.Head && last.Ack == b.Ack
	if !had {
		same = out.Changes == 0 && b.Head == 0 && b.Ack == 0
	}
	if same && (!had || now < last.Expires || last.Acked && out.Changes == 0) {
		return st, nil
	}
	pr, err := e.node.Put(ctx, raw)
	if err != nil {
		return st, fmt.Errorf("send bundle to %s: %w", peer, err)
	}
	e.st.Sent[peer] = sentBundle{ID: pr.ID, Upto: b.Upto, Head: b.Head, Ack: b.Ack, Changes: out.Changes, Expires: pr.Expires.Unix()}
	e.addPeer(peer)
	if err := e.save(); err != nil {
		return st, err
	}
	st.BundlesSent, st.BytesSent, st.ChangesSent = 1, len(raw), out.Changes
	e.log.Debug("relay bundle sent", "peer", peer, "bundle", pr.ID, "changes", out.Changes, "bytes", len(raw))
	return st, nil
}

func (e *Endpoint) addPeer(p string) {
	if !slices.Contains(e.st.Peers, p) && !slices.Contains(e.cfg.Peers, p) {
		e.st.Peers = append(e.st.Peers, p)
		slices.Sort(e.st.Peers)
	}
}

// Peers returns the replicas Sync sends to: Config.Peers and those learnt
// from collected bundles.
func (e *Endpoint) Peers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.peers()
}

func (e *Endpoint) peers() []string {
	ps := slices.Concat(e.cfg.Peers, e.st.Peers)
	slices.Sort(ps)
	return slices.Compact(ps)
}

// Open verifies one relay bundle of changes addressed to this replica and
// applies it, without going through the node: recipient, expiry, the
// sender's enrolled key and signature are checked before anything is
// decrypted; the decrypted bundle must name the signed sender and
// recipient. Errors match BadInput for a refused bundle, and the replica
// is unchanged.
//
// A bundle is opened once: opening one this endpoint has opened before
// (here or by Collect) gives ErrReplayed, naming it, and changes nothing.
func (e *Endpoint) Open(ctx context.Context, raw []byte) (replica.Received, error) {
	env, err := parse(raw)
	if err != nil {
		return replica.Received{}, fmt.Errorf("open relay bundle: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, seen := e.st.Seen[env.Key()]; seen {
		return replica.Received{}, fmt.Errorf("open relay bundle %s from %s: %w", env.ID, env.Sender, ErrReplayed)
	}
	rec, err := e.open(ctx, env)
	if err != nil {
		return rec, err
	}
	e.st.Seen[env.Key()] = env.Expires.Unix()
	if err := e.save(); err != nil {
		return rec, fmt.Errorf("open relay bundle %s: applied, but not remembered as opened: %w", env.ID, err)
	}
	return rec, nil
}

func (e *Endpoint) open(ctx context.Context, env *Envelope) (replica.Received, error) {
	u, err := unseal(env, e.id, e.roster, e.cfg.Now())
	if err != nil {
		return replica.Received{}, err
	}
	// The envelope's signature authenticated the sender: the bundle's
	// positions are its own.
	return e.r.ReceiveFrom(ctx, u.Bundle, replica.ReceiveOptions{Sender: env.Sender})
}

// Collect adopts what arrived in the node (Scan), then opens every
// bundle of changes in it addressed to this replica (from sender only,
// unless sender is ""), and puts an acknowledgement for each in the node,
// addressed to its sender. Acknowledgements addressed to this replica
// mark the bundles they name as delivered. A bundle is opened once: its ID
// is remembered until it expires, and a copy of it is then refused as
// expired. Refused bundles are acknowledged too (they need no more
// carrying) and reported in the joined error; the replica's own failures
// (a full disk) stop the collection and leave the bundle for next time.
func (e *Endpoint) Collect(ctx context.Context, sender string) (transport.Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.collect(ctx, sender)
}

func (e *Endpoint) collect(ctx context.Context, sender string) (transport.Stats, error) {
	var st transport.Stats
	var refusals []error
	scan, err := e.node.Scan(ctx)
	if err != nil {
		return st, err
	}
	for _, rej := range scan.Rejected {
		st.BundlesRejected++
		refusals = append(refusals, fmt.Errorf("%s: %w", filepath.Base(rej.Path), rej.Err))
	}
	items, err := e.node.Items(ctx)
	if err != nil {
		return st, err
	}
	me := e.r.ID()
	acks := map[string][]Item{} // sender → bundles to acknowledge
	dirty := false
	for _, it := range items {
		if it.Recipient != me {
			continue
		}
		if it.Kind == KindAck {
			if last, ok := e.st.Sent[it.Sender]; ok && !last.Acked && slices.Contains(it.Acked, last.ID) {
				last.Acked = true
				e.st.Sent[it.Sender] = last
				dirty = true
			}
			continue
		}
		if sender != "" && it.Sender != sender {
			continue
		}
		if _, seen := e.st.Seen[it.Key()]; seen {
			acks[it.Sender] = append(acks[it.Sender], it) // still held: its acknowledgement was not stored
			continue
		}
		raw, err := e.node.Read(ctx, it.Key())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return st, err
		}
		env, err := parse(raw)
		var rec replica.Received
		if err == nil {
			rec, err = e.open(ctx, env)
		}
		switch {
		case err == nil:
			st.BundlesReceived++
			st.BytesReceived += len(raw)
			st.ChangesApplied += rec.Applied
			st.Duplicates += rec.Duplicates
			e.addPeer(it.Sender)
		case isBadInput(err):
			st.BundlesRejected++
			refusals = append(refusals, err)
			e.log.Warn("relay bundle refused", "bundle", it.ID, "from", it.Sender, "err", err)
		default:
			if dirty {
				err = errors.Join(err, e.save())
			}
			return st, err
		}
		e.st.Seen[it.Key()] = it.Expires.Unix()
		acks[it.Sender] = append(acks[it.Sender], it)
		dirty = true
	}
	if dirty {
		if err := e.save(); err != nil {
			return st, err
		}
	}
	for _, from := range slices.Sorted(maps.Keys(acks)) {
		if err := e.acknowledge(ctx, from, acks[from]); err != nil {
			return st, err
		}
	}
	return st, errors.Join(refusals...)
}

// acknowledge puts in the node acknowledgements to sender of the given
// bundles. An acknowledgement lives as long as the longest-lived bundle
// it names, so it keeps every node from taking in a copy of them again.
func (e *Endpoint) acknowledge(ctx context.Context, sender string, items []Item) error {
	hs := make([]Header, len(items))
	for i, it := range items {
		hs[i] = it.Header
	}
	acks, err := Acknowledge(e.id, sender, hs, e.cfg.Now())
	if err != nil {
		return err
	}
	for _, raw := range acks {
		if _, err := e.node.Put(ctx, raw); err != nil {
			return fmt.Errorf("acknowledge bundles of %s: %w", sender, err)
		}
	}
	return nil
}

// Sync collects what arrived for this replica, then sends to every peer
// (Peers) the bundle it needs, if any. The returned error joins the
// refusals of what arrived and the failures of sending; what could be
// done is done.
func (e *Endpoint) Sync(ctx context.Context) (transport.Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, err := e.collect(ctx, "")
	errs := []error{err}
	for _, p := range e.peers() {
		s, err := e.send(ctx, p)
		st.Add(s)
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

var _ transport.Link = (*Link)(nil)

// Link is a relay endpoint's link to one peer: a transport.Link whose
// courier is whoever carries the endpoint's node to the peer's.
type Link struct {
	e    *Endpoint
	peer string
}

// Link returns the endpoint's link to peer.
func (e *Endpoint) Link(peer string) *Link { return &Link{e: e, peer: peer} }

// Sync collects the bundles from the peer that carriers left in the
// endpoint's node, then puts there the bundle the peer needs, if any.
// Carrying the node to the peer and back is outside the link.
func (l *Link) Sync(ctx context.Context) (transport.Stats, error) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	st, cerr := l.e.collect(ctx, l.peer)
	sent, serr := l.e.send(ctx, l.peer)
	st.Add(sent)
	return st, errors.Join(cerr, serr)
}
