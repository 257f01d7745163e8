package distributed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// resultConsumption is a producer's consumption of its results: one
// durable consumer on the result stream, filtered on the producer's
// subject, and the Consume loop reading it. If the consumer disappears (it
// outlived ResultTTL without a producer, or an operator deleted it), it is
// created again: results wait in the stream meanwhile, so none is lost.
type resultConsumption struct {
	mu      sync.Mutex
	current jetstream.ConsumeContext
	closed  bool
	closing chan struct{}
	bg      sync.WaitGroup // recreations in progress
}

func (p *Producer) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           resultConsumer(p.id),
		Description:       "procpool results of producer " + p.id,
		FilterSubject:     p.reply,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           p.cfg.AckWait,
		MaxAckPending:     -1,
		InactiveThreshold: p.cfg.ResultTTL,
		Replicas:          p.cfg.Replicas,
	}
}

// consumeResults creates (or finds) the result consumer and starts reading
// it.
func (p *Producer) consumeResults(ctx context.Context) error {
	rc := &p.rc
	rc.mu.Lock()
	if rc.closing == nil {
		rc.closing = make(chan struct{})
	}
	rc.mu.Unlock()
	cons, err := p.results.CreateOrUpdateConsumer(ctx, p.consumerConfig())
	if err != nil {
		return fmt.Errorf("distributed: create result consumer of producer %s: %w", p.id, err)
	}
	cc, err := cons.Consume(p.onResult, jetstream.ConsumeErrHandler(p.onConsumeError))
	if err != nil {
		return fmt.Errorf("distributed: consume results of producer %s: %w", p.id, err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		cc.Stop()
		return nil
	}
	rc.current = cc
	return nil
}

// onConsumeError is called by the Consume loop; a deleted consumer stops
// it, and is created again.
func (p *Producer) onConsumeError(_ jetstream.ConsumeContext, err error) {
	if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		p.cfg.Logger.Debug("result consumer", "producer", p.id, "error", err)
		return
	}
	rc := &p.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return
	}
	p.cfg.Logger.Warn("result consumer deleted; creating it again", "producer", p.id)
	rc.bg.Add(1)
	go p.recreate()
}

// recreate creates the result consumer again, retrying until it succeeds
// or the producer closes.
func (p *Producer) recreate() {
	defer p.rc.bg.Done()
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		err := p.consumeResults(ctx)
		cancel()
		if err == nil {
			return
		}
		p.cfg.Logger.Warn("could not create the result consumer again", "producer", p.id, "error", err)
		select {
		case <-p.rc.closing:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// stopConsuming stops reading results, for good.
func (p *Producer) stopConsuming() {
	rc := &p.rc
	rc.mu.Lock()
	rc.closed = true
	close(rc.closing)
	rc.mu.Unlock()
	rc.bg.Wait()
	rc.mu.Lock()
	cc := rc.current
	rc.mu.Unlock()
	if cc != nil {
		cc.Stop()
		<-cc.Closed()
	}
}

// onResult receives one result: the first for a pending job resolves it,
// any other is discarded. Either way it is acknowledged, which removes it
// from the result stream.
func (p *Producer) onResult(m jetstream.Msg) {
	h := m.Headers()
	id := h.Get(hdrJob)
	p.mu.Lock()
	j := p.pending[id]
	if j != nil {
		delete(p.pending, id)
		p.signalIdle()
	}
	p.mu.Unlock()
	if j == nil {
		p.duplicates.Add(1)
	} else {
		node := h.Get(hdrNode)
		delivery, _ := strconv.Atoi(h.Get(hdrDelivery))
		var result []byte
		err := headerError(h)
		if err != nil {
			err = &JobError{Node: node, Deliveries: delivery, DeadLetter: h.Get(hdrDeadLetter) != "", Err: err}
		} else {
			result = m.Data()
		}
		j.resolve(result, err, node, delivery)
	}
	if err := m.Ack(); err != nil {
		p.cfg.Logger.Debug("ack result", "job", id, "error", err)
	}
}
