package distributed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/procpool/procpool"
)

// TestErrorWireForm: every error a job can end with on a node crosses as
// an error that matches the same procpool error, and a worker's error
// keeps its code and message.
func TestErrorWireForm(t *testing.T) {
	crash := &procpool.CrashError{Cause: procpool.ErrWorkerCrashed, Reason: "exit 3", PID: 42, Attempt: 1}
	poison := &procpool.CrashError{Cause: procpool.ErrPoisonJob, Reason: "exit 3", PID: 43, Attempt: 3}
	timeout := &procpool.CrashError{Cause: procpool.ErrJobTimeout, Reason: "killed", PID: 44}
	tests := []struct {
		err     error
		kind    errorKind
		matches []error
		not     []error
	}{
		{&procpool.RemoteError{Code: "bad_size", Message: "size -1"}, kindRemote, []error{procpool.ErrRemote}, []error{procpool.ErrJobTimeout}},
		{&procpool.RemoteError{Code: "deadline", Message: "late"}, kindRemote, []error{procpool.ErrRemote, procpool.ErrJobTimeout}, nil},
		{crash, kindCrashed, []error{procpool.ErrWorkerCrashed}, []error{procpool.ErrPoisonJob}},
		{poison, kindPoison, []error{procpool.ErrPoisonJob}, []error{procpool.ErrWorkerCrashed}},
		{timeout, kindTimeout, []error{procpool.ErrJobTimeout}, []error{procpool.ErrWorkerCrashed}},
		{fmt.Errorf("%w: 70000 bytes", procpool.ErrPayloadTooLarge), kindTooLarge, []error{procpool.ErrPayloadTooLarge}, nil},
		{fmt.Errorf("%w: 0xc1", procpool.ErrBadPayload), kindBadPayload, []error{procpool.ErrBadPayload}, nil},
		{procpool.ErrUnavailable, kindUnavailable, []error{procpool.ErrUnavailable}, nil},
		{procpool.ErrShuttingDown, kindShuttingDown, []error{procpool.ErrShuttingDown}, nil},
		{procpool.ErrQueueFull, kindQueueFull, []error{procpool.ErrQueueFull}, nil},
		{fmt.Errorf("%w: sha", procpool.ErrUnknownJobType), kindUnknownType, []error{procpool.ErrUnknownJobType}, nil},
		{fmt.Errorf("%w: delivery 6", ErrNodeLost), kindLost, []error{ErrNodeLost}, nil},
		{cancelled(context.DeadlineExceeded), kindCancelled, []error{procpool.ErrCancelled, context.DeadlineExceeded}, nil},
		{errors.New("something else"), kindOther, nil, []error{procpool.ErrRemote, procpool.ErrCancelled}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			h := nats.Header{}
			setError(h, tt.err, false)
			if got := errorKind(h.Get(hdrError)); got != tt.kind {
				t.Fatalf("kind %q, want %q", got, tt.kind)
			}
			back := headerError(h)
			for _, m := range tt.matches {
				if !errors.Is(back, m) {
					t.Errorf("rebuilt %v does not match %v", back, m)
				}
			}
			for _, m := range tt.not {
				if errors.Is(back, m) {
					t.Errorf("rebuilt %v matches %v", back, m)
				}
			}
			var re, want *procpool.RemoteError
			if errors.As(tt.err, &want) {
				if !errors.As(back, &re) || *re != *want {
					t.Errorf("remote error %+v, want %+v", re, want)
				}
			} else if back.Error() != tt.err.Error() {
				t.Errorf("message %q, want %q", back.Error(), tt.err.Error())
			}
		})
	}
	if headerError(nats.Header{}) != nil {
		t.Error("a header without an error gave one")
	}
}

// TestHeaderValue: a message that would break a header is made safe.
func TestHeaderValue(t *testing.T) {
	if got := headerValue("a\r\nNats-Msg-Id: forged\nb"); strings.ContainsAny(got, "\r\n") {
		t.Errorf("%q keeps a line break", got)
	}
	long := headerValue(strings.Repeat("x", 5000))
	if len(long) != 1<<10 || !strings.HasSuffix(long, "...") {
		t.Errorf("long value: %d bytes", len(long))
	}
}

// TestJobErrorMatches: a JobError matches ErrDeadLetter only when the job
// was dead-lettered, and what its Err matches always.
func TestJobErrorMatches(t *testing.T) {
	inner := decodeError(kindPoison, "", "poison")
	dead := &JobError{Node: "n1", Deliveries: 2, DeadLetter: true, Err: inner}
	if !errors.Is(dead, ErrDeadLetter) || !errors.Is(dead, procpool.ErrPoisonJob) {
		t.Errorf("%v", dead)
	}
	failed := &JobError{Node: "n1", Deliveries: 1, Err: inner}
	if errors.Is(failed, ErrDeadLetter) || !errors.Is(failed, procpool.ErrPoisonJob) {
		t.Errorf("%v", failed)
	}
	if !strings.Contains(dead.Error(), "n1") || !strings.Contains(dead.Error(), "dead-lettered") {
		t.Errorf("message %q", dead.Error())
	}
}
