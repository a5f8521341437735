package relay

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
)

// NodeConfig tunes a Node. The zero value works.
type NodeConfig struct {
	// Budget bounds the bytes of bundles of changes the node holds (a
	// phone's spare storage); 0 means no limit. Acknowledgements are
	// always accepted and not counted: they are small, signed by enrolled
	// devices, and free space.
	Budget int64
	// MaxHops is the hop count beyond which the node accepts no copy of a
	// bundle (default 64). It stops honest relays passing a bundle round
	// a loop; a bundle's lifetime bounds the rest.
	MaxHops int
	// Inboxes are more directories where bundles arrive, such as a
	// phone's Bluetooth folder; the node's own directory is always one.
	// Scan adopts every "*.relay" file found in them.
	Inboxes []string
	// Now is the clock that decides expiry; nil means time.Now.
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c NodeConfig) Validate() error {
	if c.Budget < 0 || c.MaxHops < 0 {
		return errors.New("relay node config: limits must not be negative")
	}
	return nil
}

func (c NodeConfig) withDefaults() NodeConfig {
	if c.MaxHops == 0 {
		c.MaxHops = 64
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Node is a relay node: a directory of relay bundles on a phone, a USB
// stick, a clinic laptop. Bundles that arrive (in the directory itself or
// an inbox, under any name ending ".relay") are adopted by Scan only after
// their signature verifies against the roster; what the node holds lives in
// the "held" subdirectory as "<bundle id>.relay", written atomically.
//
// A node never drops a bundle it accepted until the bundle expires or an
// acknowledgement of it arrives. A Node is safe for concurrent use; one
// directory must be used by one Node at a time (files arriving from outside
// are fine).
type Node struct {
	dir    string
	root   *os.Root // the held directory
	roster *device.Roster
	cfg    NodeConfig

	mu    sync.Mutex
	cache map[string]cached // file name → parsed header, by size and time
}

type cached struct {
	size  int64
	mod   time.Time
	h     Header
	acked []string
}

// Item is a bundle a node holds.
type Item struct {
	Header
	Size  int64
	Acked []string // for an acknowledgement, the bundles it acknowledges
}

const (
	heldDir    = "held"
	fileSuffix = ".relay"
	tmpPrefix  = ".tmp-"
)

// OpenNode opens (or creates) the relay node in dir. The roster verifies
// every bundle the node accepts.
func OpenNode(dir string, roster *device.Roster, cfg NodeConfig) (*Node, error) {
	if roster == nil {
		return nil, errors.New("open relay node: a roster is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, heldDir), 0o700); err != nil {
		return nil, fmt.Errorf("open relay node: %w", err)
	}
	root, err := os.OpenRoot(filepath.Join(dir, heldDir))
	if err != nil {
		return nil, fmt.Errorf("open relay node: %w", err)
	}
	n := &Node{dir: dir, root: root, roster: roster, cfg: cfg.withDefaults(), cache: map[string]cached{}}
	// Temporary files left by a crash are not bundles.
	ents, err := n.entries()
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("open relay node: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = root.Remove(e.Name())
		}
	}
	return n, nil
}

// Dir returns the node's directory.
func (n *Node) Dir() string { return n.dir }

// Close releases the node's directory.
func (n *Node) Close() error { return n.root.Close() }

func (n *Node) entries() ([]fs.DirEntry, error) {
	d, err := n.root.Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// Key names a bundle in a node: its sender and its ID. IDs are chosen by
// senders, so one sender cannot shadow another's bundle by reusing its ID.
func (h Header) Key() string { return h.Sender + "-" + h.ID }

func heldName(key string) string { return key + fileSuffix }

// parseKey checks a key's form and splits it.
func parseKey(key string) (sender, id string, ok bool) {
	sender, id, ok = strings.Cut(key, "-")
	if !ok {
		return "", "", false
	}
	if _, err := hexID(sender); err != nil {
		return "", "", false
	}
	if _, err := hexID(id); err != nil {
		return "", "", false
	}
	return sender, id, true
}

// Items lists the bundles the node holds, in carrying priority (see
// Carry). Expired bundles are left out.
func (n *Node) Items(ctx context.Context) ([]Item, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	items, err := n.items(ctx)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now()
	items = slices.DeleteFunc(items, func(it Item) bool { return it.Expired(now) })
	sortPriority(items)
	return items, nil
}

// sortPriority orders bundles for carrying: acknowledgements first (they
// are small and let every node they reach drop what they acknowledge),
// then bundles of changes oldest first (they have waited longest and
// expire soonest), then by ID so the order is the same everywhere.
func sortPriority(items []Item) {
	slices.SortFunc(items, func(a, b Item) int {
		if c := cmp.Compare(rank(a.Kind), rank(b.Kind)); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Key(), b.Key())
	})
}

// allItems lists every held bundle, expired or not.
func (n *Node) allItems(ctx context.Context) ([]Item, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.items(ctx)
}

func rank(k Kind) int {
	if k == KindAck {
		return 0
	}
	return 1
}

// items lists held bundles, parsing files it has not seen. n.mu is held.
func (n *Node) items(ctx context.Context) ([]Item, error) {
	ents, err := n.entries()
	if err != nil {
		return nil, fmt.Errorf("list relay node %s: %w", n.dir, err)
	}
	seen := map[string]bool{}
	var out []Item
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		key, ok := strings.CutSuffix(name, fileSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		sender, id, ok := parseKey(key)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		seen[name] = true
		c, ok := n.cache[name]
		if !ok || c.size != info.Size() || !c.mod.Equal(info.ModTime()) {
			data, err := n.readHeld(name)
			if err != nil {
				n.cfg.Logger.Warn("unreadable bundle in relay node", "node", n.dir, "file", name, "err", err)
				continue
			}
			env, err := parse(data)
			if err != nil || env.ID != id || env.Sender != sender {
				n.cfg.Logger.Warn("damaged bundle in relay node", "node", n.dir, "file", name, "err", err)
				continue
			}
			c = cached{size: info.Size(), mod: info.ModTime(), h: env.Header, acked: env.Acked()}
			n.cache[name] = c
		}
		out = append(out, Item{Header: c.h, Size: c.size, Acked: c.acked})
	}
	for name := range n.cache {
		if !seen[name] {
			delete(n.cache, name)
		}
	}
	return out, nil
}

func (n *Node) readHeld(name string) ([]byte, error) {
	f, err := n.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, maxFileBytes)
}

// maxFileBytes bounds a relay bundle file: the largest body and its frame.
const maxFileBytes = MaxBundleBytes + 64

// readBounded reads a file of at most limit bytes. A file whose size is
// over the limit is refused before any of it is read; one that grows
// while read is refused once limit+1 bytes are in. Memory follows the
// file's actual size.
func readBounded(f fs.File, limit int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > int64(limit) {
		return nil, fmt.Errorf("file of %d bytes, over %d: %w", fi.Size(), limit, ErrTooLarge)
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+1))
	if _, err := buf.ReadFrom(io.LimitReader(f, int64(limit)+1)); err != nil {
		return nil, err
	}
	if buf.Len() > limit {
		return nil, fmt.Errorf("file over %d bytes: %w", limit, ErrTooLarge)
	}
	return buf.Bytes(), nil
}

// Read returns the bytes of a bundle the node holds (by Header.Key), or
// an error matching fs.ErrNotExist.
func (n *Node) Read(ctx context.Context, key string) ([]byte, error) {
	if _, _, ok := parseKey(key); !ok {
		return nil, fmt.Errorf("read bundle %q: %w", key, fs.ErrNotExist)
	}
	data, err := n.readHeld(heldName(key))
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", key, err)
	}
	return data, nil
}

// ackIndex returns the bundles that acknowledgements among items
// acknowledge, each as sender, ID and recipient: an acknowledgement from R
// to S only clears bundles from S to R.
func ackIndex(items []Item) map[ackKey]bool {
	idx := map[ackKey]bool{}
	for _, it := range items {
		addAcks(idx, it)
	}
	return idx
}

func addAcks(idx map[ackKey]bool, ack Item) {
	for _, id := range ack.Acked {
		idx[ackKey{sender: ack.Recipient, id: id, recipient: ack.Sender}] = true
	}
}

type ackKey struct{ sender, id, recipient string }

func acknowledged(idx map[ackKey]bool, h Header) bool {
	return h.Kind == KindChanges && idx[ackKey{h.Sender, h.ID, h.Recipient}]
}

// PutResult says what Put did with a bundle.
type PutResult struct {
	Header
	// Stored is false if the node already held the bundle, or holds an
	// acknowledgement of it (it has arrived and needs no more carrying).
	Stored bool
	// Pruned lists the bundles (by Key) an acknowledgement let the node drop.
	Pruned []string
}

// Put verifies a relay bundle and, if the node lacks it, stores it
// atomically. An acknowledgement prunes the bundles it acknowledges. It is
// refused, and nothing changes, if it is malformed (ErrMalformed,
// ErrVersion, ErrTooLarge), its signature does not verify against an
// enrolled sender (device.ErrUnknownDevice, device.ErrBadSignature, ...),
// it has expired (ErrExpired), made too many hops (ErrTooManyHops) or does
// not fit in the budget (ErrNodeFull).
func (n *Node) Put(ctx context.Context, data []byte) (PutResult, error) {
	env, err := parse(data)
	if err != nil {
		return PutResult{}, fmt.Errorf("put relay bundle: %w", err)
	}
	if err := env.Verify(n.roster); err != nil {
		return PutResult{}, fmt.Errorf("put relay bundle: %w", err)
	}
	return n.put(ctx, env, data)
}

func (n *Node) put(ctx context.Context, env *Envelope, data []byte) (PutResult, error) {
	res := PutResult{Header: env.Header}
	if env.Expired(n.cfg.Now()) {
		return res, fmt.Errorf("put relay bundle %s: expired %s: %w", env.ID, env.Expires.Format(time.RFC3339), ErrExpired)
	}
	if env.Hops > n.cfg.MaxHops {
		return res, fmt.Errorf("put relay bundle %s: %d hops: %w", env.ID, env.Hops, ErrTooManyHops)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	items, err := n.items(ctx)
	if err != nil {
		return res, err
	}
	var used int64
	for _, it := range items {
		if it.Key() == env.Key() {
			return res, nil
		}
		if it.Kind == KindChanges {
			used += it.Size
		}
	}
	idx := ackIndex(items)
	if acknowledged(idx, env.Header) {
		return res, nil
	}
	if env.Kind == KindChanges && n.cfg.Budget > 0 && used+int64(len(data)) > n.cfg.Budget {
		return res, fmt.Errorf("put relay bundle %s of %d bytes: %d of %d used: %w", env.ID, len(data), used, n.cfg.Budget, ErrNodeFull)
	}
	if err := n.writeHeld(heldName(env.Key()), data); err != nil {
		return res, fmt.Errorf("put relay bundle %s: %w", env.ID, err)
	}
	res.Stored = true
	if env.Kind == KindAck {
		idx = map[ackKey]bool{}
		addAcks(idx, Item{Header: env.Header, Acked: env.Acked()})
		for _, it := range items {
			if acknowledged(idx, it.Header) {
				if err := n.root.Remove(heldName(it.Key())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return res, fmt.Errorf("prune acknowledged bundle %s: %w", it.Key(), err)
				}
				res.Pruned = append(res.Pruned, it.Key())
			}
		}
		if len(res.Pruned) > 0 {
			if err := syncRoot(n.root); err != nil {
				return res, err
			}
		}
	}
	n.cfg.Logger.Debug("relay bundle stored", "node", n.dir, "bundle", env.ID, "kind", env.Kind.String(), "from", env.Sender, "to", env.Recipient, "pruned", len(res.Pruned))
	return res, nil
}

// writeHeld writes a file in the held directory atomically: temporary
// file, fsync, rename, fsync of the directory. The name never comes from
// input but from a checked bundle ID, and os.Root keeps every path inside
// the directory.
func (n *Node) writeHeld(name string, data []byte) (err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := tmpPrefix + hex.EncodeToString(rnd[:])
	f, err := n.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			n.root.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = n.root.Rename(tmp, name); err != nil {
		return err
	}
	return syncRoot(n.root)
}

func syncRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// Prune drops expired bundles and bundles an acknowledgement held here
// acknowledges, and returns their keys. Nothing else is ever dropped.
func (n *Node) Prune(ctx context.Context) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	items, err := n.items(ctx)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now()
	idx := ackIndex(items)
	var pruned []string
	for _, it := range items {
		if !it.Expired(now) && !acknowledged(idx, it.Header) {
			continue
		}
		if err := n.root.Remove(heldName(it.Key())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return pruned, fmt.Errorf("prune relay bundle %s: %w", it.Key(), err)
		}
		pruned = append(pruned, it.Key())
	}
	if len(pruned) > 0 {
		if err := syncRoot(n.root); err != nil {
			return pruned, err
		}
	}
	return pruned, nil
}

// Rejected is a file Scan refused.
type Rejected struct {
	Path string
	Err  error
}

// ScanResult reports a Scan.
type ScanResult struct {
	Adopted  []PutResult
	Rejected []Rejected
}

// Scan adopts the bundles that arrived in the node's directory or its
// inboxes: every regular file named "*.relay" is read, verified and stored
// as Put does, then removed from the inbox. A file that is refused is
// removed too (it is reported in Rejected, with why); a file that could
// not be stored for lack of budget is left where it is. Other files are
// left alone.
func (n *Node) Scan(ctx context.Context) (ScanResult, error) {
	var res ScanResult
	for _, dir := range append([]string{n.dir}, n.cfg.Inboxes...) {
		if err := n.scanDir(ctx, dir, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (n *Node) scanDir(ctx context.Context, dir string, res *ScanResult) error {
	inbox, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("scan relay inbox: %w", err)
	}
	defer inbox.Close()
	d, err := inbox.Open(".")
	if err != nil {
		return fmt.Errorf("scan relay inbox: %w", err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("scan relay inbox %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if !strings.HasSuffix(name, fileSuffix) || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := inbox.Open(name)
		if err != nil {
			continue // gone meanwhile
		}
		data, err := readBounded(f, maxFileBytes)
		f.Close()
		if err == nil {
			var pr PutResult
			pr, err = n.Put(ctx, data)
			if err == nil {
				res.Adopted = append(res.Adopted, pr)
			}
		}
		switch {
		case errors.Is(err, ErrNodeFull):
			continue
		case err != nil && !isBadInput(err):
			return fmt.Errorf("adopt %s: %w", path, err)
		case err != nil:
			res.Rejected = append(res.Rejected, Rejected{Path: path, Err: err})
			n.cfg.Logger.Warn("relay bundle refused", "node", n.dir, "file", path, "err", err)
		}
		if err := inbox.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove adopted %s: %w", path, err)
		}
	}
	return nil
}

// CarryResult reports a Carry.
type CarryResult struct {
	Carried []Item   // bundles copied, in the order copied
	Full    []Item   // bundles the destination lacked but had no room for
	Refused []Item   // bundles the destination refused (too many hops, or a key no longer enrolled there)
	Pruned  []string // keys of bundles dropped from either node as expired or acknowledged
}

// Bytes returns the bytes carried.
func (r CarryResult) Bytes() int64 {
	var n int64
	for _, it := range r.Carried {
		n += it.Size
	}
	return n
}

// Carry copies to the destination node every bundle of from that it
// lacks, with one more hop, in priority order: acknowledgements first,
// then bundles of changes oldest first (see Items). A bundle that does
// not fit in the destination's budget is skipped and the next, smaller
// ones are tried. Both nodes are pruned first (expired and acknowledged
// bundles), so nothing dead is carried; nothing is removed from from.
func Carry(ctx context.Context, from, to *Node) (CarryResult, error) {
	var res CarryResult
	for _, n := range []*Node{from, to} {
		p, err := n.Prune(ctx)
		res.Pruned = append(res.Pruned, p...)
		if err != nil {
			return res, fmt.Errorf("carry: %w", err)
		}
	}
	items, err := from.Items(ctx)
	if err != nil {
		return res, fmt.Errorf("carry: %w", err)
	}
	have, err := to.Items(ctx)
	if err != nil {
		return res, fmt.Errorf("carry: %w", err)
	}
	held := map[string]bool{}
	for _, it := range have {
		held[it.Key()] = true
	}
	idx := ackIndex(have)
	for _, it := range items {
		if held[it.Key()] || acknowledged(idx, it.Header) {
			continue
		}
		data, err := from.Read(ctx, it.Key())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("carry: %w", err)
		}
		env, err := parse(data)
		if err != nil {
			return res, fmt.Errorf("carry bundle %s: %w", it.ID, err)
		}
		pr, err := to.Put(ctx, env.withHops(env.Hops+1))
		it.Hops++
		switch {
		case errors.Is(err, ErrNodeFull):
			res.Full = append(res.Full, it)
		case err != nil && isBadInput(err):
			res.Refused = append(res.Refused, it)
		case err != nil:
			return res, fmt.Errorf("carry: %w", err)
		case pr.Stored:
			res.Carried = append(res.Carried, it)
			if it.Kind == KindAck {
				// The acknowledgement may have pruned what the
				// destination held; refresh what it acknowledges.
				addAcks(idx, it)
			}
		}
	}
	return res, nil
}

// Exchange carries both ways between two nodes, as when a phone meets a
// clinic laptop: first a to b, then b to a.
func Exchange(ctx context.Context, a, b *Node) (ab, ba CarryResult, err error) {
	if ab, err = Carry(ctx, a, b); err != nil {
		return ab, ba, err
	}
	ba, err = Carry(ctx, b, a)
	return ab, ba, err
}
