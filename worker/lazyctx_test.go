package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLazyContextAgreesWithTheStandardContexts checks lazyContext's rule:
// whether or not Done (or Value) is called before or after the end, and
// whatever ends it, its Err, context.Cause and Done agree with those of
// context.WithDeadline over context.WithCancelCause of the same parent
// treated the same way.
func TestLazyContextAgreesWithTheStandardContexts(t *testing.T) {
	myCause := errors.New("cancelled by the host")
	parentCause := errors.New("the host closed the connection")
	type ends struct {
		cancel   bool // the job's own cancel, with myCause
		parent   bool // the parent's, with parentCause
		deadline bool // a deadline already past (else an hour away, or none)
		none     bool // no deadline at all
	}
	cases := map[string]ends{
		"alive":                   {},
		"alive, no deadline":      {none: true},
		"own cancel":              {cancel: true},
		"parent cancel":           {parent: true},
		"deadline":                {deadline: true},
		"deadline, then cancel":   {deadline: true, cancel: true},
		"parent, then own cancel": {parent: true, cancel: true},
	}
	for name, e := range cases {
		for _, early := range []bool{false, true} { // materialize before the ends
			t.Run(name+map[bool]string{false: ", lazy", true: ", materialized"}[early], func(t *testing.T) {
				wantParent, wantParentCancel := context.WithCancelCause(context.Background())
				defer wantParentCancel(nil)
				gotParent, gotParentCancel := context.WithCancelCause(context.Background())
				defer gotParentCancel(nil)

				deadline := time.Now().Add(time.Hour)
				if e.deadline {
					deadline = time.Now().Add(-time.Millisecond)
				}
				if e.none {
					deadline = time.Time{}
				}
				want, wantCancel := context.WithCancelCause(wantParent)
				defer wantCancel(nil)
				var wantCtx context.Context = want
				if !deadline.IsZero() {
					var stop context.CancelFunc
					wantCtx, stop = context.WithDeadline(want, deadline)
					defer stop()
				}
				got := &lazyContext{}
				got.begin(gotParent, deadline)
				if early {
					got.Done()
				}

				if e.parent {
					wantParentCancel(parentCause)
					gotParentCancel(parentCause)
				}
				if e.cancel {
					wantCancel(myCause)
					got.end(myCause)
				}
				if e.deadline {
					<-wantCtx.Done()
				}

				assert.Equal(t, wantCtx.Err(), got.Err(), "Err")
				wd, wok := wantCtx.Deadline()
				gd, gok := got.Deadline()
				assert.Equal(t, wok, gok, "Deadline's ok")
				assert.True(t, wd.Equal(gd), "Deadline: want %v, got %v", wd, gd)
				assert.Equal(t, context.Cause(wantCtx), got.causeErr(), "cause, unmaterialized")
				assert.Equal(t, context.Cause(wantCtx), context.Cause(got), "context.Cause")
				select {
				case <-got.Done():
					assert.Error(t, wantCtx.Err(), "Done closed for a live context")
				default:
					assert.NoError(t, wantCtx.Err(), "Done open for an ended context")
				}
				got.end(nil) // the job's end: changes nothing once ended
				if wantCtx.Err() != nil {
					assert.Equal(t, wantCtx.Err(), got.Err(), "Err after end")
				}
			})
		}
	}
}

// TestLazyContextWakesAWaitingHandler checks that Done, called before the
// end, is closed by each kind of end.
func TestLazyContextWakesAWaitingHandler(t *testing.T) {
	for _, end := range []string{"cancel", "parent", "deadline"} {
		t.Run(end, func(t *testing.T) {
			parent, cancelParent := context.WithCancelCause(context.Background())
			defer cancelParent(nil)
			deadline := time.Now().Add(time.Hour)
			if end == "deadline" {
				deadline = time.Now().Add(20 * time.Millisecond)
			}
			c := &lazyContext{}
			c.begin(parent, deadline)
			done := c.Done()
			switch end {
			case "cancel":
				c.end(errCancelRequested)
			case "parent":
				cancelParent(errHostGone)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("Done not closed after the %s", end)
			}
			require.Error(t, c.Err())
			want := map[string]error{"cancel": errCancelRequested, "parent": errHostGone, "deadline": context.DeadlineExceeded}[end]
			assert.Equal(t, want, context.Cause(c))
		})
	}
}

// TestLazyContextTakesItsParentsDeadline: a parent that ended at its own
// deadline ends the lazy context with DeadlineExceeded, and with the
// parent's cause, as a standard child's Err and Cause would, whether or
// not the child has a deadline of its own, materialized or not.
func TestLazyContextTakesItsParentsDeadline(t *testing.T) {
	parent, stop := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer stop()
	want, wantCancel := context.WithCancelCause(parent)
	defer wantCancel(nil)
	for _, own := range []time.Time{{}, time.Now().Add(time.Hour)} {
		for _, early := range []bool{false, true} {
			got := &lazyContext{}
			got.begin(parent, own)
			if early {
				got.Done()
			}
			assert.Equal(t, want.Err(), got.Err(), "Err (own deadline %v, materialized %v)", !own.IsZero(), early)
			assert.Equal(t, context.Cause(want), got.causeErr(), "cause")
			got.end(errCancelRequested)
			assert.Equal(t, context.DeadlineExceeded, got.Err(), "Err after end")
		}
	}
}
