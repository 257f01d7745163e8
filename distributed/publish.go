package distributed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
)

// publishTimeout bounds one attempt to publish a message.
const publishTimeout = 5 * time.Second

// deadLetterReserve is the room a job's message leaves under the server's
// max_payload, so that its dead letter (the same message with a few more
// headers, the error's message at most 1 KiB of them) always fits.
const deadLetterReserve = 2 << 10

// publishStored publishes msg, which must carry a Nats-Msg-Id, to stream
// and waits for the stream to store it, retrying with the same message id
// while the server cannot be reached, until ctx ends. It returns the
// stream's ack and the number of attempts made. Retrying is safe because
// the stream de-duplicates on the message id.
func publishStored(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, stream string, log hclog.Logger) (*jetstream.PubAck, int, error) {
	wait := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		ack, err := js.PublishMsg(actx, msg, jetstream.WithExpectStream(stream))
		cancel()
		if err == nil {
			return ack, attempt, nil
		}
		if perr := permanent(err); perr != nil {
			return nil, attempt, perr
		}
		if ctx.Err() != nil {
			return nil, attempt, fmt.Errorf("distributed: publish to %s: %w (last attempt: %v)", msg.Subject, ctx.Err(), err)
		}
		log.Debug("publish: retrying", "subject", msg.Subject, "id", msg.Header.Get(jetstream.MsgIDHeader), "attempt", attempt, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		wait = min(2*wait, time.Second)
	}
}

// permanent returns the error to give up with if err will not go away by
// retrying, and nil if it may.
func permanent(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return fmt.Errorf("%w: %w", procpool.ErrPayloadTooLarge, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrPermissionViolation), errors.As(err, &apiErr):
		return fmt.Errorf("distributed: publish: %w", err)
	}
	return nil
}
