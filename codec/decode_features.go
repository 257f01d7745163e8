package codec

import (
	"fmt"
	"math"
	"slices"
)

// The decoding of the optional features' elements: a batch's items, the
// handshake's feature names, a request's meta map.

// decodeItems reads the array of a batch's items into m.Items.
func decodeItems(p *parser, m *Message) error {
	n, err := p.arrayLen("batch items", false)
	if err != nil {
		return err
	}
	if n == 0 || n > MaxBatch {
		return fmt.Errorf("a %s of %d items, want 1 to %d", m.Kind, n, MaxBatch)
	}
	// Every item takes at least one byte: refuse a count the frame cannot
	// hold before growing the slice.
	if n > uint64(len(p.b)-p.off) {
		return fmt.Errorf("batch items: %d announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	want := itemKind(m.Kind)
	m.Items = slices.Grow(m.Items[:0], int(n))[:n]
	for i := range m.Items {
		it := &m.Items[i]
		*it = Message{}
		if err := decodeMessage(p, it, want); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// decodeFeatures reads the array of feature names of a hello or ready,
// ignoring the names this package does not know.
func decodeFeatures(p *parser) (Features, error) {
	n, err := p.arrayLen("features", true)
	if err != nil {
		return 0, err
	}
	if n > uint64(len(p.b)-p.off) {
		return 0, fmt.Errorf("features: %d announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	var f Features
	for i := uint64(0); i < n; i++ {
		name, err := p.raw("feature")
		if err != nil {
			return 0, fmt.Errorf("feature %d: %w", i, err)
		}
		f |= featureOf(name)
	}
	return f, nil
}

// The keys of a request's meta map.
const (
	metaAttempt     = "attempt"
	metaTraceParent = "traceparent"
	metaTraceState  = "tracestate"
	metaCredit      = "credit"
)

// decodeMeta reads a request's meta map. Keys this package does not know
// are skipped, their values checked as a Value payload is; a known key may
// appear once.
func decodeMeta(p *parser, m *Message) error {
	n, err := p.mapLen("meta")
	if err != nil {
		return err
	}
	if n > uint64(len(p.b)-p.off)/2 {
		return fmt.Errorf("meta: %d entries announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	var seen uint8
	for i := uint64(0); i < n; i++ {
		key, err := p.raw("meta key")
		if err != nil {
			return err
		}
		var bit uint8
		switch string(key) {
		case metaAttempt:
			bit = 1
			v, err := p.uint("meta attempt", math.MaxUint32)
			if err != nil {
				return err
			}
			m.Attempt = uint32(v)
		case metaTraceParent:
			bit = 2
			if m.TraceParent, err = p.str("meta traceparent", false); err != nil {
				return err
			}
		case metaTraceState:
			bit = 4
			if m.TraceState, err = p.str("meta tracestate", false); err != nil {
				return err
			}
		case metaCredit:
			bit = 8
			v, err := p.uint("meta credit", math.MaxUint32)
			if err != nil {
				return err
			}
			m.Credit = uint32(v)
		default:
			vn, err := valueLen(p.b[p.off:], maxValueDepth)
			if err != nil {
				return fmt.Errorf("meta %q: %w", key, err)
			}
			p.off += vn
		}
		if seen&bit != 0 {
			return fmt.Errorf("meta: key %q twice", key)
		}
		seen |= bit
	}
	return nil
}
