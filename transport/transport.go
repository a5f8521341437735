package transport

import "context"

// Link carries bundles between a local replica and one peer over some courier.
//
// A Link never decides what to send: the bundle comes from
// replica.MakeBundle and every bundle that arrives goes to replica.Receive,
// which applies it whole or not at all and ignores what it already holds.
// A Link is therefore safe to run any number of times, and a bundle that is
// lost, repeated or reordered by the courier does no harm. Implementations
// in this module are safe for concurrent use.
type Link interface {
	// Sync runs one cycle of the courier from the local side: it sends the bundle the peer
	// needs (replica.MakeBundle) and applies every bundle that has arrived from the peer
	// (replica.Receive). For store-and-forward couriers a cycle moves data one hop; the
	// peer's side must also run for acknowledgements to return.
	//
	// Implementations apply what has arrived before sending, so the bundle
	// sent carries the freshest acknowledgement. A bundle the local replica
	// refuses does not stop the cycle: the others are still applied and the
	// bundle is still sent, and the returned error wraps each refusal (match
	// replica.ErrMalformedBundle and the other replica sentinels with
	// errors.Is). Stats count what was done even when the error is not nil.
	Sync(ctx context.Context) (Stats, error)
}

// Stats reports what one or more Sync cycles moved.
type Stats struct {
	BundlesSent     int // bundles handed to the courier
	BundlesReceived int // bundles that arrived and were accepted
	BundlesRejected int // bundles that arrived and were refused
	BytesSent       int // bytes handed to the courier
	BytesReceived   int // bytes of accepted bundles
	ChangesSent     int // changes in the bundles sent
	ChangesApplied  int // changes new to the local replica
	Duplicates      int // changes that arrived but were already held
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.BundlesSent += o.BundlesSent
	s.BundlesReceived += o.BundlesReceived
	s.BundlesRejected += o.BundlesRejected
	s.BytesSent += o.BytesSent
	s.BytesReceived += o.BytesReceived
	s.ChangesSent += o.ChangesSent
	s.ChangesApplied += o.ChangesApplied
	s.Duplicates += o.Duplicates
}
