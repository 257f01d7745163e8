package distributed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
)

// DeadLetter is a job given up by a node: it was poisonous, failed with a
// retryable error on its last delivery, was delivered more than MaxDeliver
// times, or its message was malformed. Dead letters are kept in
// DeadLetterStream, on DeadLetterSubject(jobType), until an operator
// removes them; to run one again, submit its payload anew.
type DeadLetter struct {
	JobID      string
	JobType    string
	Kind       procpool.PayloadKind
	Payload    []byte
	Node       string // the node that gave it up
	Deliveries int    // the delivery it was given up at
	Producer   string // the reply subject of the producer that submitted it
	// Err is the job's last error, rebuilt: it matches, with errors.Is,
	// the procpool error it was on the node (procpool.ErrPoisonJob,
	// procpool.ErrWorkerCrashed, ...), or ErrNodeLost.
	Err error
	// Seq and Stored are the dead letter's sequence number in
	// DeadLetterStream and the time it was stored there.
	Seq    uint64
	Stored time.Time
}

// ParseDeadLetter reads a dead letter from a message of DeadLetterStream.
func ParseDeadLetter(m jetstream.Msg) (*DeadLetter, error) {
	h := m.Headers()
	dl := &DeadLetter{
		JobID:    h.Get(hdrJob),
		JobType:  h.Get(hdrJobType),
		Payload:  m.Data(),
		Node:     h.Get(hdrNode),
		Producer: h.Get(hdrReply),
		Err:      headerError(h),
	}
	if dl.Err == nil || dl.JobType == "" {
		return nil, fmt.Errorf("distributed: message on %s is not a dead letter", m.Subject())
	}
	dl.Deliveries, _ = strconv.Atoi(h.Get(hdrDelivery))
	dl.Kind, _ = parseKind(h.Get(hdrKind))
	if meta, err := m.Metadata(); err == nil {
		dl.Seq, dl.Stored = meta.Sequence.Stream, meta.Timestamp
	}
	return dl, nil
}

// ReadDeadLetters returns the dead letters of a job type (of every type if
// jobType is ""), oldest first, at most limit of them (0: all). It reads
// through an ordered consumer and removes nothing.
func ReadDeadLetters(ctx context.Context, js jetstream.JetStream, cfg Config, jobType string, limit int) ([]*DeadLetter, error) {
	cfg = cfg.withDefaults()
	filter := cfg.DeadLetterSubject("*")
	if jobType != "" {
		if err := checkJobType(jobType); err != nil {
			return nil, err
		}
		filter = cfg.DeadLetterSubject(jobType)
	}
	s, err := js.Stream(ctx, cfg.DeadLetterStream())
	if err != nil {
		return nil, fmt.Errorf("distributed: dead letters: %w", err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("distributed: dead letters: %w", err)
	}
	var out []*DeadLetter
	for limit <= 0 || len(out) < limit {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("distributed: dead letters: %w", err)
		}
		dl, err := ParseDeadLetter(m)
		if err != nil {
			return out, err
		}
		out = append(out, dl)
		if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
			break
		}
	}
	return out, nil
}
