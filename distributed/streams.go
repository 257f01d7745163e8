package distributed

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Setup creates the result and dead-letter streams and, for each job type
// named, its job stream and node consumer, where they are missing. Existing
// ones are left as they are. Producers and nodes do the same on first use
// unless Config.NoCreate is set; Setup is for an operator who creates them
// with credentials that producers and nodes do not have.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config, jobTypes ...string) error {
	cfg = cfg.withDefaults()
	cfg.NoCreate = false
	if err := cfg.validate(); err != nil {
		return err
	}
	if _, err := cfg.resultStream(ctx, js); err != nil {
		return err
	}
	if _, err := cfg.deadLetterStream(ctx, js); err != nil {
		return err
	}
	for _, t := range jobTypes {
		if err := checkJobType(t); err != nil {
			return err
		}
		s, err := cfg.jobStream(ctx, js, t)
		if err != nil {
			return err
		}
		if _, err := cfg.nodeConsumer(ctx, js, s, t); err != nil {
			return err
		}
	}
	return nil
}

// jobStream returns a job type's stream, created if missing.
func (c Config) jobStream(ctx context.Context, js jetstream.JetStream, jobType string) (jetstream.Stream, error) {
	return c.stream(ctx, js, jetstream.StreamConfig{
		Name:        c.JobStream(jobType),
		Description: "procpool jobs of type " + jobType,
		Subjects:    []string{c.JobSubject(jobType)},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew, // a full stream refuses jobs; it never drops accepted ones
		MaxMsgSize:  c.maxMsgSize(),
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
}

// resultStream returns the results' stream, created if missing.
func (c Config) resultStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return c.stream(ctx, js, jetstream.StreamConfig{
		Name:        c.ResultStream(),
		Description: "procpool job results, one subject per producer",
		Subjects:    []string{c.ResultSubject("*")},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      c.ResultTTL,
		MaxMsgSize:  c.maxMsgSize(),
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
}

// deadLetterStream returns the dead letters' stream, created if missing.
func (c Config) deadLetterStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return c.stream(ctx, js, jetstream.StreamConfig{
		Name:        c.DeadLetterStream(),
		Description: "procpool dead letters: jobs given up, with their last error",
		Subjects:    []string{c.DeadLetterSubject("*")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
}

// maxMsgSize is the MaxMsgSize of the streams created: -1 (none of the
// stream's own; the server's max_payload still applies) unless set.
func (c Config) maxMsgSize() int32 {
	if c.MaxMsgSize > 0 {
		return c.MaxMsgSize
	}
	return -1
}

// stream looks a stream up and creates it if it is missing (unless
// NoCreate). An existing stream is never updated.
func (c Config) stream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, sc.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) || c.NoCreate {
		return nil, fmt.Errorf("distributed: look up stream %s: %w", sc.Name, err)
	}
	s, err = js.CreateStream(ctx, sc)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, sc.Name) // created by someone else meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("distributed: create stream %s: %w", sc.Name, err)
	}
	return s, nil
}

// nodeConsumer returns the pull consumer every node of a job type shares,
// created if missing (unless NoCreate). Deliveries are unlimited at the
// server: nodes enforce MaxDeliver themselves (see Config.MaxDeliver), and
// so is the number of unacknowledged jobs: each node bounds its own by its
// capacity.
func (c Config) nodeConsumer(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, jobType string) (jetstream.Consumer, error) {
	cons, err := s.Consumer(ctx, NodeConsumer)
	if err == nil {
		return cons, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) || c.NoCreate {
		return nil, fmt.Errorf("distributed: look up consumer %s of %s: %w", NodeConsumer, c.JobStream(jobType), err)
	}
	cons, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       NodeConsumer,
		Description:   "procpool nodes serving " + jobType,
		FilterSubject: c.JobSubject(jobType),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		Replicas:      c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("distributed: create consumer %s of %s: %w", NodeConsumer, c.JobStream(jobType), err)
	}
	return cons, nil
}

// jobMessageLimit is the largest job message, headers included, that a
// producer publishes to s: what s accepts, and room for its dead letter
// under the server's max_payload (deadLetterReserve).
func jobMessageLimit(s jetstream.Stream, maxPayload int64) int64 {
	return messageLimit(s, maxPayload-deadLetterReserve)
}

// messageLimit is the largest message, headers included, that a stream
// accepts through a connection whose server announced maxPayload.
func messageLimit(s jetstream.Stream, maxPayload int64) int64 {
	limit := maxPayload
	if m := int64(s.CachedInfo().Config.MaxMsgSize); m > 0 && (limit <= 0 || m < limit) {
		limit = m
	}
	return limit
}
