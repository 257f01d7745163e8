package codec

import "strings"

// Features is a set of the protocol's optional features, negotiated in the
// handshake: the host announces in Hello the features it may use, the worker
// answers in Ready with those of them it supports, and from then on each side
// uses only the features both named. A peer that names none (every worker
// and host before the features existed) gets exactly the messages of the
// base protocol.
//
// On the wire a set is an array of the features' names, in any order. A
// Reader ignores the names it does not know, so that a newer peer may offer
// more; a Writer sends the names of the set's known features, in the order
// of their bits, and nothing for an empty set.
type Features uint32

// The optional features.
const (
	// FeatureMeta: a Request may carry the job's attempt number and W3C
	// trace context (Message.Attempt, TraceParent, TraceState).
	FeatureMeta Features = 1 << iota
	// FeatureBatch: the host may send many requests in one BatchRequest,
	// and the worker answer many in one BatchResponse.
	FeatureBatch
	// FeatureStream: a Request may carry a credit window
	// (Message.Credit), its handler then sends Chunks before its Response
	// as long as it has credit, and the host grants more with Credit
	// messages.
	FeatureStream
	// FeatureSharedItems: with FeatureBatch and the shared memory region,
	// the host may place the payloads of a BatchRequest's items in the
	// region whatever their size, several of them in one block. A worker
	// announces it when its handlers take a small payload in the region as
	// they take one in a frame (the Go SDK hands either over as a []byte).
	FeatureSharedItems

	// AllFeatures is every feature this package knows.
	AllFeatures = FeatureMeta | FeatureBatch | FeatureStream | FeatureSharedItems
)

// featureNames are the wire names of the features, by bit.
var featureNames = [...]string{"meta", "batch", "stream", "shareditems"}

// Has reports whether f holds every feature of g.
func (f Features) Has(g Features) bool { return f&g == g }

// String returns the names of f's features, comma-separated ("meta,batch"),
// or "none".
func (f Features) String() string {
	var b strings.Builder
	for i, name := range featureNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(name)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// ParseFeature returns the feature named name ("meta", "batch", "stream",
// "shareditems"), or 0 if this package does not know it.
func ParseFeature(name string) Features {
	for i, n := range featureNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

// featureOf returns the feature whose wire name is b, or 0.
func featureOf(b []byte) Features {
	for i, n := range featureNames {
		if string(b) == n { // no allocation: a comparison
			return 1 << i
		}
	}
	return 0
}
