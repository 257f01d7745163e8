package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/procpool/procpool/codec"
)

// runnerIdle is how long a runner goroutine waits for a job before exiting.
const runnerIdle = 10 * time.Second

// runner runs t, then the tasks it receives from c.work until it has been
// idle for runnerIdle or the conversation ends. Reusing goroutines spares
// every job the growth of a fresh goroutine's stack, which profiles showed
// to be a quarter of the SDK's CPU time.
func (c *conn) runner(tk task) {
	var t *time.Timer
	for {
		c.runTask(tk)
		if t == nil {
			t = time.NewTimer(runnerIdle)
		} else {
			t.Reset(runnerIdle)
		}
		select {
		case tk = <-c.work:
		case <-t.C:
			return
		case <-c.quit:
			t.Stop()
			return
		}
	}
}

// run runs j's handler and queues its response.
func (c *conn) run(j *job) { c.runHolding(j, nil) }

// runHolding runs j's handler and queues its response, or, with h, holds
// it in h (see heldResponses). A panic, or a handler's runtime.Goexit,
// queues what h holds at once: the worker is leaving.
func (c *conn) runHolding(j *job, h *heldResponses) {
	var (
		result   []byte
		err      error
		returned bool
	)
	defer func() {
		var p *PanicError
		if !returned {
			v := recover()
			if v == nil {
				v = errGoexit
			}
			p = &PanicError{JobType: j.jobType, ID: j.id, Value: v, Stack: debug.Stack()}
		}
		c.settle(j, result, err, p, h != nil)
		if h == nil {
			c.send(j)
			return
		}
		h.hold(j)
		if p != nil {
			h.flush()
		}
	}()
	result, err = j.h.serve(j.ctx, j)
	returned = true
}

// send queues the response of the settled job j. j belongs to the outbox
// from the call on.
func (c *conn) send(j *job) {
	c.out.send(j)
	c.ran(1)
}

// sendAll is send of every job of jobs, queued together.
func (c *conn) sendAll(jobs []*job) {
	c.out.sendAll(jobs)
	c.ran(len(jobs))
}

// ran counts n answered jobs as no longer running.
func (c *conn) ran(n int) {
	c.mu.Lock()
	c.running -= n
	if c.running == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
}

// settle turns a handler's outcome into j's response, ready to be sent;
// the job counts as running until it is. A job whose response is held
// (see heldResponses) stays registered until the flush that sends it;
// another is unregistered at once.
func (c *conn) settle(j *job, result []byte, err error, p *PanicError, held bool) {
	j.kind = codec.KindResponse
	switch {
	case p != nil:
		j.code = codec.CodePanic
		j.msg = panicSummary(p)
		j.pk, j.result = codec.Blob, panicDetail(p)
		// One Write: the host logs a burst of stderr as one record.
		c.logger.Printf("worker: panic in job %d of type %q: %v\n%s", j.id, j.jobType, p.Value, p.Stack)
	case err != nil:
		j.code, j.msg = classify(j, err)
	default:
		j.pk, j.result = j.h.kind, result
	}
	j.msg = truncate(j.msg, maxErrMessage)
	j.jc.end(nil)
	j.jc.endStream() // no chunk after the response
	if held && p == nil {
		return // unregistered by the flush that sends it (heldResponses)
	}
	c.mu.Lock()
	c.jobs.remove(j.id, j)
	first := p != nil && c.panicErr == nil
	if first {
		c.panicErr = p
		c.panicky.Store(true)
	}
	c.mu.Unlock()
	if first {
		c.stopReading()
		close(c.panicked)
	}
}

// classify returns the error code and message of a failed job.
func classify(j *job, err error) (code, msg string) {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		if err == error(e) {
			return e.Code, e.Message
		}
		return e.Code, err.Error()
	}
	ctxErr := j.ctx.Err()
	if ctxErr == nil {
		return codec.CodeHandler, err.Error()
	}
	msg = err.Error()
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		return codec.CodeDeadline, fmt.Sprintf("%s (job timeout %v)", msg, j.timeout)
	}
	if cause := j.jc.causeErr(); cause != nil && cause != ctxErr && !errors.Is(err, cause) {
		msg = fmt.Sprintf("%s (%v)", msg, cause)
	}
	return codec.CodeCancelled, msg
}

// truncate shortens s to at most n bytes plus an ellipsis, on a rune
// boundary, so that it stays valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// panicFrames is how many stack lines (two per frame) a panic response's
// detail carries; the worker's log has the whole stack.
const panicFrames = 10

// panicSummary returns the first line of "panic: <value>": a panic
// response's error message.
func panicSummary(p *PanicError) string {
	s := fmt.Sprintf("panic: %v", p.Value)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimRight(s[:i], "\r") + " [...]"
	}
	return s
}

// panicDetail returns the panic value in full and the first frames below
// the panic: a panic response's payload, its detail.
func panicDetail(p *PanicError) []byte {
	lines := bytes.Split(bytes.TrimSpace(p.Stack), []byte("\n"))
	start := 1 // after "goroutine N [running]:"
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("panic(")) {
			start = i + 2 // after runtime.gopanic and its file line
			break
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "panic: %v\n", p.Value)
	for i := start; i < len(lines) && i < start+panicFrames; i++ {
		b.WriteByte('\n')
		b.Write(lines[i])
	}
	if b.Len() > maxErrMessage {
		return []byte(truncate(b.String(), maxErrMessage))
	}
	return b.Bytes()
}
