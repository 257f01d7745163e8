package actors

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFeedKeepsOrderAndBound: inputs come out in order, at most limit wait
// (a put past it blocks until a take), take without wait returns what is
// at hand, and a closed feed gives what is left, then nothing.
func TestFeedKeepsOrderAndBound(t *testing.T) {
	ctx := context.Background()
	f := newFeed(4)
	put := make(chan int)
	go func() {
		defer f.close()
		for i := range 10 {
			if !f.put(ctx, []byte(fmt.Sprint(i))) {
				return
			}
			put <- i
		}
	}()
	for range 4 {
		<-put
	}
	select {
	case i := <-put:
		t.Fatalf("input %d put past the limit of 4", i)
	case <-time.After(50 * time.Millisecond):
	}
	got, left := f.take(ctx, 3, true)
	require.Equal(t, [][]byte{[]byte("0"), []byte("1"), []byte("2")}, got)
	assert.Equal(t, 1, left)
	var seen []string
	go func() {
		for range put {
		}
	}()
	for {
		items, _ := f.take(ctx, 2, true)
		if items == nil {
			break
		}
		for _, p := range items {
			seen = append(seen, string(p))
		}
	}
	assert.Equal(t, []string{"3", "4", "5", "6", "7", "8", "9"}, seen)
	none, _ := f.take(ctx, 1, false)
	assert.Nil(t, none)
	close(put)
}

// TestFeedEndsWithItsContext: a blocked put and a blocked take return when
// their context ends.
func TestFeedEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newFeed(1)
	require.True(t, f.put(ctx, []byte("a")))
	putDone := make(chan bool)
	go func() { putDone <- f.put(ctx, []byte("b")) }()
	empty := newFeed(1)
	takeDone := make(chan [][]byte)
	go func() { items, _ := empty.take(ctx, 1, true); takeDone <- items }()
	cancel()
	select {
	case ok := <-putDone:
		assert.False(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("put blocked past its context")
	}
	select {
	case items := <-takeDone:
		assert.Nil(t, items)
	case <-time.After(10 * time.Second):
		t.Fatal("take blocked past its context")
	}
}

// TestFeedFill: fill waits while the feed is not full, and returns once
// it is, once it is closed, once other is ready, once ctx ends, or at its
// timeout.
func TestFeedFill(t *testing.T) {
	ctx := context.Background()
	returns := func(fill func()) bool {
		done := make(chan struct{})
		go func() { fill(); close(done) }()
		select {
		case <-done:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	never := make(chan struct{})

	f := newFeed(3)
	require.True(t, f.put(ctx, []byte("a")))
	done := make(chan struct{})
	go func() { f.fill(ctx, never, nil); close(done) }()
	require.True(t, f.put(ctx, []byte("b")))
	select {
	case <-done:
		t.Fatal("fill returned with 2 of 3 inputs")
	case <-time.After(50 * time.Millisecond):
	}
	require.True(t, f.put(ctx, []byte("c")))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("fill did not return once the feed was full")
	}
	require.Equal(t, 3, f.len())
	require.True(t, returns(func() { f.fill(ctx, never, nil) }), "a full feed is filled already")

	other := make(chan struct{}, 1)
	g := newFeed(3)
	require.False(t, returns(func() { g.fill(ctx, other, nil) }))
	other <- struct{}{}
	require.Eventually(t, func() bool { return len(other) == 0 }, 5*time.Second, time.Millisecond, "other's token is taken")

	h := newFeed(3)
	h.close()
	require.True(t, returns(func() { h.fill(ctx, never, nil) }), "a closed feed")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.True(t, returns(func() { newFeed(3).fill(cctx, never, nil) }), "an ended context")
	require.True(t, returns(func() { newFeed(3).fill(ctx, never, time.After(time.Millisecond)) }), "its timeout")
}
