package actors

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/worker"
)

// fakeOwner records what a link tells its owner. It resolves answered jobs,
// as the pool's hooks do.
type fakeOwner struct {
	readyC  chan int64
	closedC chan error

	mu       sync.Mutex
	answers  int
	leaves   int
	overruns []uint64
	order    []string
}

func newFakeOwner() *fakeOwner {
	return &fakeOwner{readyC: make(chan int64, 1), closedC: make(chan error, 1)}
}

func (o *fakeOwner) note(s string) {
	o.mu.Lock()
	o.order = append(o.order, s)
	o.mu.Unlock()
}

func (o *fakeOwner) ready(limit int64) { o.readyC <- limit }
func (o *fakeOwner) answered(j *Job, result []byte, err error) {
	o.mu.Lock()
	o.answers++
	o.mu.Unlock()
	o.note("answered")
	j.resolve(result, err)
}
func (o *fakeOwner) itemAnswered(j *Job, item int, result []byte, err error) {
	o.note("item")
	if err != errCallerDecides {
		j.batch.give(item, result, err)
	}
	if j.batch.running.Add(-1) == 0 && j.batch.allDone() {
		j.resolve(nil, nil)
	}
}
func (o *fakeOwner) itemsAnswered(j *Job, outs []itemOutcome) {
	n := len(outs)
	for range n {
		o.note("item")
	}
	j.batch.giveMany(outs)
	if j.batch.running.Add(-int32(n)) == 0 && j.batch.allDone() {
		j.resolve(nil, nil)
	}
}
func (o *fakeOwner) leaving(error) {
	o.mu.Lock()
	o.leaves++
	o.mu.Unlock()
	o.note("leaving")
}
func (o *fakeOwner) overran(id uint64) {
	o.mu.Lock()
	o.overruns = append(o.overruns, id)
	o.mu.Unlock()
}
func (o *fakeOwner) closed(err error) { o.closedC <- err }

func (o *fakeOwner) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.closedC:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the link never closed")
		return nil
	}
}

// pipes are the two pipes between a host link and its peer.
type pipes struct {
	hostW, peerR *os.File // host → worker (fd 3)
	peerW, hostR *os.File // worker → host (fd 4)
}

func newPipes(t *testing.T) *pipes {
	t.Helper()
	r1, w1, err := os.Pipe()
	require.NoError(t, err)
	r2, w2, err := os.Pipe()
	require.NoError(t, err)
	return &pipes{hostW: w1, peerR: r1, peerW: w2, hostR: r2}
}

func (p *pipes) closeAll() {
	for _, f := range []*os.File{p.hostW, p.peerR, p.peerW, p.hostR} {
		f.Close()
	}
}

// startLink runs a link over p with cfg's defaults filled in.
func startLink(t *testing.T, p *pipes, cfg linkConfig) (*link, *fakeOwner, *sync.WaitGroup) {
	t.Helper()
	if cfg.jobType == "" {
		cfg.jobType = "echo"
	}
	if cfg.maxFrame == 0 {
		cfg.maxFrame = codec.DefaultMaxFrame
	}
	if cfg.counters == nil {
		cfg.counters = &counters{}
	}
	o := newFakeOwner()
	l := newLink(cfg, o)
	var wg sync.WaitGroup
	l.start(p.hostW, p.hostR, &wg)
	return l, o, &wg
}

// sdkPeer serves p with the Go worker SDK: echo, sleep (until cancelled),
// panic, deaf (sleeps 300 ms whatever happens).
func sdkPeer(t *testing.T, p *pipes) (done chan error) {
	s := &worker.Server{}
	s.Handle("echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })
	s.Handle("sleep", func(ctx context.Context, b []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s.Handle("panic", func(ctx context.Context, b []byte) ([]byte, error) { panic("boom") })
	s.Handle("deaf", func(ctx context.Context, b []byte) ([]byte, error) { // ignores its deadline
		time.Sleep(300 * time.Millisecond)
		return b, nil
	})
	done = make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), p.peerR, p.peerW) }()
	return done
}

// finish ends a link's test as the worker's exit would: the worker's end of
// its output closes, the link reads to the end and reports closed with want
// (nil: the test saw it close already), and its goroutines end.
func finish(t *testing.T, p *pipes, l *link, o *fakeOwner, wg *sync.WaitGroup, want error) {
	t.Helper()
	p.hostW.Close()
	p.peerW.Close()
	l.end()
	if want != nil {
		assert.ErrorIs(t, o.waitClosed(t), want)
	}
	l.close()
	wg.Wait()
	p.closeAll()
}

func waitReady(t *testing.T, o *fakeOwner) int64 {
	t.Helper()
	select {
	case limit := <-o.readyC:
		return limit
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake")
		return 0
	}
}

func waitJob(t *testing.T, j *Job) ([]byte, error) {
	t.Helper()
	select {
	case <-j.Done():
		return j.Result()
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not resolve")
		return nil, nil
	}
}

func TestLinkServesJobsEveryWay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	served := sdkPeer(t, p)
	l, o, wg := startLink(t, p, linkConfig{})
	assert.Equal(t, int64(codec.DefaultMaxFrame), waitReady(t, o))
	for _, mode := range []sendMode{viaWriter, direct, directSelfRead} {
		for _, n := range []int{0, 1, 100 << 10, 3 << 20} {
			in := bytes.Repeat([]byte{byte(n)}, n)
			j := NewJob(Blob, in)
			require.True(t, l.dispatch(j, mode))
			if mode == directSelfRead {
				l.readFor(j)
			}
			out, err := waitJob(t, j)
			require.NoError(t, err, "mode %d size %d", mode, n)
			require.True(t, bytes.Equal(in, out), "mode %d size %d", mode, n)
		}
	}
	assert.Equal(t, 0, l.table.len())
	p.hostW.Close() // the worker reads the end of its input and leaves
	require.NoError(t, <-served)
	finish(t, p, l, o, wg, io.EOF)
}

func TestLinkCancels(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	served := sdkPeer(t, p)
	l, o, wg := startLink(t, p, linkConfig{jobType: "sleep"})
	waitReady(t, o)
	j := NewJob(Blob, nil)
	require.True(t, l.dispatch(j, direct))
	time.Sleep(20 * time.Millisecond)
	l.cancel(j)
	_, err := waitJob(t, j)
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, codec.CodeCancelled, re.Code)
	p.hostW.Close()
	require.NoError(t, <-served)
	finish(t, p, l, o, wg, io.EOF)
}

// TestLinkMatchesPongsToPings: only the pong of the ping awaited answers
// it; any other pong breaks the protocol.
func TestLinkMatchesPongsToPings(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{})
	r := newRawPeer(t, p, codec.Message{})
	waitReady(t, o)
	now := time.Now()
	assert.Zero(t, l.beat(now), "a ping is sent")
	ping := r.next(t)
	require.Equal(t, codec.KindPing, ping.Kind)
	assert.Equal(t, time.Second, l.beat(now.Add(time.Second)), "and awaited: no second ping")
	r.send(t, &codec.Message{Kind: codec.KindPong, ID: ping.ID})
	require.Eventually(t, func() bool { return l.pingSeq.Load() == 0 }, 5*time.Second, time.Millisecond, "its pong answers it")
	assert.Zero(t, l.beat(time.Now()), "the next ping goes out")
	next := r.next(t)
	require.NotEqual(t, ping.ID, next.ID)
	r.send(t, &codec.Message{Kind: codec.KindPong, ID: ping.ID}) // the old one's
	assert.ErrorIs(t, o.waitClosed(t), errProtocol)
	finish(t, p, l, o, wg, nil)
}

func TestLinkTimesJobsOut(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	sdkPeer(t, p)
	l, o, wg := startLink(t, p, linkConfig{jobType: "deaf", timeout: 50 * time.Millisecond})
	waitReady(t, o)
	j := NewJob(Blob, nil)
	require.True(t, l.dispatch(j, directSelfRead))
	l.readFor(j) // interrupted by the timeout
	_, err := waitJob(t, j)
	assert.ErrorIs(t, err, ErrJobTimeout)
	assert.Eventually(t, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.overruns) == 1 && o.answers == 1 // the late answer still frees the slot
	}, 5*time.Second, time.Millisecond)
	finish(t, p, l, o, wg, io.EOF)
}

func TestLinkPanicAnswerClosesItForJobs(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	served := sdkPeer(t, p)
	l, o, wg := startLink(t, p, linkConfig{jobType: "panic"})
	waitReady(t, o)
	j := NewJob(Blob, nil)
	require.True(t, l.dispatch(j, directSelfRead))
	l.readFor(j)
	_, err := waitJob(t, j)
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, codec.CodePanic, re.Code)
	o.mu.Lock()
	assert.Equal(t, []string{"leaving", "answered"}, o.order, "the worker is closed before its slot is freed")
	o.mu.Unlock()
	assert.False(t, l.dispatch(NewJob(Blob, nil), direct), "no job goes to a worker that is leaving")
	var pe *worker.PanicError
	assert.ErrorAs(t, <-served, &pe)
	finish(t, p, l, o, wg, io.EOF)
}

// rawPeer is a hand-written worker: it answers hello, then lets the test
// script the rest.
type rawPeer struct {
	rd *codec.Reader
	bw *bufio.Writer
	w  *codec.Writer
}

func newRawPeer(t *testing.T, p *pipes, ready codec.Message) *rawPeer {
	t.Helper()
	r := &rawPeer{rd: codec.NewReader(p.peerR, 0), bw: bufio.NewWriter(p.peerW)}
	r.w = codec.NewWriter(r.bw, 0)
	var m codec.Message
	require.NoError(t, r.rd.Read(&m))
	require.Equal(t, codec.KindHello, m.Kind)
	if ready.Kind == 0 {
		ready = codec.Message{Kind: codec.KindReady, Version: codec.Version, JobTypes: []string{"echo"}}
	}
	r.send(t, &ready)
	return r
}

func (r *rawPeer) send(t *testing.T, m *codec.Message) {
	t.Helper()
	require.NoError(t, r.w.Write(m))
	require.NoError(t, r.bw.Flush())
}

func (r *rawPeer) next(t *testing.T) codec.Message {
	t.Helper()
	var m codec.Message
	require.NoError(t, r.rd.Read(&m))
	m.Payload = bytes.Clone(m.Payload)
	return m
}

// TestLinkDiesOfProtocolViolations: each frame a worker was not asked for
// kills the link with errProtocol, and the job in flight stays in the table
// for the worker's end to settle.
func TestLinkDiesOfProtocolViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(t *testing.T, r *rawPeer, req codec.Message)
	}{
		{"unknown id", func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindResponse, ID: req.ID + 99})
		}},
		{"second answer", func(t *testing.T, r *rawPeer, req codec.Message) {
			// In one write: a frame that comes when nothing is expected is
			// read at the next ping or job (here: with the first answer).
			resp := codec.Message{Kind: codec.KindResponse, ID: req.ID}
			require.NoError(t, r.w.Write(&resp))
			require.NoError(t, r.w.Write(&resp))
			require.NoError(t, r.bw.Flush())
		}},
		{"unsolicited pong", func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindPong, ID: 77})
		}},
		{"a request from the worker", func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			p := newPipes(t)
			l, o, wg := startLink(t, p, linkConfig{})
			r := newRawPeer(t, p, codec.Message{})
			waitReady(t, o)
			j := NewJob(Blob, []byte("x"))
			require.True(t, l.dispatch(j, viaWriter))
			req := r.next(t)
			tc.script(t, r, req)
			assert.ErrorIs(t, o.waitClosed(t), errProtocol)
			if tc.name != "second answer" {
				assert.Equal(t, 1, l.table.len(), "the job waits for the worker's end")
				assert.Len(t, l.takeAll(), 1)
			}
			finish(t, p, l, o, wg, nil)
		})
	}
}

func TestLinkRefusesABadHandshake(t *testing.T) {
	for name, ready := range map[string]codec.Message{
		"version":  {Kind: codec.KindReady, Version: 99, MaxFrame: 1, JobTypes: []string{"echo"}},
		"job type": {Kind: codec.KindReady, Version: codec.Version, JobTypes: []string{"other"}},
		"features not offered": {Kind: codec.KindReady, Version: codec.Version, JobTypes: []string{"echo"},
			Features: codec.FeatureBatch},
	} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			p := newPipes(t)
			l, o, wg := startLink(t, p, linkConfig{})
			newRawPeer(t, p, ready)
			assert.ErrorIs(t, o.waitClosed(t), errHandshake)
			assert.Equal(t, int64(codec.DefaultMaxFrame), l.peerLimit.Load(), "a refused worker's limit is not taken")
			assert.Empty(t, o.readyC)
			finish(t, p, l, o, wg, nil)
		})
	}
}

func TestLinkChecksTheResultKind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{})
	r := newRawPeer(t, p, codec.Message{})
	waitReady(t, o)
	j := NewJob(Value, []byte{0x01})
	require.True(t, l.dispatch(j, viaWriter))
	req := r.next(t)
	r.send(t, &codec.Message{Kind: codec.KindResponse, ID: req.ID, PayloadKind: codec.Blob, Payload: []byte("f")})
	_, err := waitJob(t, j)
	assert.ErrorIs(t, err, ErrBadResult)
	finish(t, p, l, o, wg, io.EOF)
}

// TestLinkReadsWhatTheWorkerLeftAtItsEnd: an answer written just before the
// worker's end is read before the link reports it closed.
func TestLinkReadsWhatTheWorkerLeftAtItsEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{})
	r := newRawPeer(t, p, codec.Message{})
	waitReady(t, o)
	j := NewJob(Blob, []byte("last"))
	require.True(t, l.dispatch(j, viaWriter))
	req := r.next(t)
	r.send(t, &codec.Message{Kind: codec.KindResponse, ID: req.ID, Payload: req.Payload})
	finish(t, p, l, o, wg, io.EOF)
	out, err := waitJob(t, j)
	require.NoError(t, err)
	assert.Equal(t, "last", string(out))
}

// TestLinkBoundsWritesToAStalledWorker: a worker that reads nothing cannot
// hold a caller (its write is interrupted, the rest handed over) nor the
// link (the stall bound breaks it).
func TestLinkBoundsWritesToAStalledWorker(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{stall: 3 * time.Second})
	newRawPeer(t, p, codec.Message{}) // then reads nothing
	waitReady(t, o)
	j := NewJob(Blob, make([]byte, 8<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	stop := context.AfterFunc(ctx, l.interrupt)
	start := time.Now()
	require.True(t, l.dispatch(j, direct))
	stop()
	assert.Less(t, time.Since(start), 2*time.Second, "the caller's write ended at its interruption, not at the stall (3 s)")
	err := o.waitClosed(t)
	assert.ErrorIs(t, err, errStalled)
	assert.Equal(t, 1, l.table.len())
	finish(t, p, l, o, wg, nil)
}

// TestLinkFindsAnUnaskedFrameAfterTheLastAnswer: a second answer that comes
// with the first is read at once, though nothing else is expected.
func TestLinkFindsAnUnaskedFrameAfterTheLastAnswer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{})
	r := newRawPeer(t, p, codec.Message{})
	waitReady(t, o)
	j := NewJob(Blob, []byte("x"))
	require.True(t, l.dispatch(j, directSelfRead))
	req := r.next(t)
	resp := codec.Message{Kind: codec.KindResponse, ID: req.ID, Payload: []byte("x")}
	require.NoError(t, r.w.Write(&resp))
	require.NoError(t, r.w.Write(&resp))
	require.NoError(t, r.bw.Flush())
	l.readFor(j)
	_, err := waitJob(t, j)
	require.NoError(t, err)
	assert.ErrorIs(t, o.waitClosed(t), errProtocol)
	finish(t, p, l, o, wg, nil)
}

// TestLinkRefusesUnaskedChunksAndBatches: partial results and batch
// responses are protocol errors unless negotiated, and a chunk beyond the
// credit is one too.
func TestLinkRefusesUnaskedChunksAndBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features codec.Features
		stream   bool
		send     func(t *testing.T, r *rawPeer, req codec.Message)
	}{
		{"chunk without the feature", 0, true, func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindChunk, ID: req.ID, Payload: []byte("c")})
		}},
		{"chunk for a job not streamed", codec.FeatureStream, false, func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindChunk, ID: req.ID, Payload: []byte("c")})
		}},
		{"chunk beyond the credit", codec.FeatureStream, true, func(t *testing.T, r *rawPeer, req codec.Message) {
			require.Equal(t, uint32(streamWindow), req.Credit, "the request gives the window")
			for range streamWindow + 1 {
				r.send(t, &codec.Message{Kind: codec.KindChunk, ID: req.ID, Payload: []byte("c")})
			}
		}},
		{"batch response without the feature", 0, false, func(t *testing.T, r *rawPeer, req codec.Message) {
			r.send(t, &codec.Message{Kind: codec.KindBatchResponse, Items: []codec.Message{{Kind: codec.KindResponse, ID: req.ID}}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			p := newPipes(t)
			l, o, wg := startLink(t, p, linkConfig{offer: codec.AllFeatures})
			r := newRawPeer(t, p, codec.Message{Kind: codec.KindReady, Version: codec.Version, JobTypes: []string{"echo"}, Features: tc.features})
			waitReady(t, o)
			j := NewJob(Blob, []byte("x"))
			if tc.stream {
				j.stream = &stream{ch: make(chan []byte, streamWindow)}
			}
			require.True(t, l.dispatch(j, viaWriter))
			req := r.next(t)
			tc.send(t, r, req)
			assert.ErrorIs(t, o.waitClosed(t), errProtocol)
			finish(t, p, l, o, wg, nil)
		})
	}
}

// TestKeepCopiesResultsApart: the results a batch response's slab holds
// are copies, each capped at its own length, so that appending to one
// never writes over the next; a result past the slab's room gets a copy
// of its own.
func TestKeepCopiesResultsApart(t *testing.T) {
	l := &link{slab: make([]byte, 0, 6)}
	frame := []byte("abcdefgh")
	a := l.keep(frame[0:3])
	b := l.keep(frame[3:6])
	c := l.keep(frame[6:8]) // no room left in the slab
	frame[0], frame[3], frame[6] = 'X', 'Y', 'Z'
	require.Equal(t, "abc", string(a))
	require.Equal(t, "def", string(b))
	require.Equal(t, "gh", string(c))
	require.Equal(t, 3, cap(a), "capped at its length")
	grown := append(a, '!')
	require.Equal(t, "abc!", string(grown))
	require.Equal(t, "def", string(b), "appending to one result leaves the next alone")

	l.slab = make([]byte, 0, 2*slabbed)
	large := l.keep(make([]byte, slabbed+1))
	assert.Zero(t, len(l.slab), "a large result gets a copy of its own, not a place in the slab")
	assert.Len(t, large, slabbed+1)
}

// TestLinkBatchResponseWithAnUnknownID: a batch response that answers an
// id the worker was never given kills the link as a protocol violation;
// the items answered before it are settled, and those after it stay in the
// table for the worker's end to settle (takeEach took them with the
// frame; restore puts them back).
func TestLinkBatchResponseWithAnUnknownID(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPipes(t)
	l, o, wg := startLink(t, p, linkConfig{offer: codec.AllFeatures})
	r := newRawPeer(t, p, codec.Message{Kind: codec.KindReady, Version: codec.Version, JobTypes: []string{"echo"}, Features: codec.FeatureBatch})
	waitReady(t, o)
	j := NewJob(Blob, nil)
	delivered := make(chan int, 3)
	j.batch = newBatch(j, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, sinkFunc(func(item int, _ []byte, err error) {
		assert.NoError(t, err)
		delivered <- item
	}))
	require.True(t, l.dispatch(j, viaWriter))
	req := r.next(t)
	require.Equal(t, codec.KindBatchRequest, req.Kind)
	require.Len(t, req.Items, 3)
	ids := []uint64{req.Items[0].ID, req.Items[1].ID, req.Items[2].ID}
	r.send(t, &codec.Message{Kind: codec.KindBatchResponse, Items: []codec.Message{
		{Kind: codec.KindResponse, ID: ids[0], Payload: []byte("A")},
		{Kind: codec.KindResponse, ID: ids[2] + 99},
		{Kind: codec.KindResponse, ID: ids[2], Payload: []byte("C")},
	}})
	assert.ErrorIs(t, o.waitClosed(t), errProtocol)
	assert.Equal(t, 0, <-delivered, "the item answered before the violation is settled")
	assert.Equal(t, 2, l.table.len(), "the unanswered item and the one after the violation wait for the worker's end")
	assert.True(t, l.running(ids[1]))
	assert.True(t, l.running(ids[2]))
	finish(t, p, l, o, wg, nil)
}

// sinkFunc is a batchSink that calls itself for each outcome.
type sinkFunc func(item int, result []byte, err error)

func (f sinkFunc) deliver(item int, result []byte, err error) { f(item, result, err) }
func (f sinkFunc) ended()                                     {}
func (f sinkFunc) deliverMany(outs []itemOutcome) {
	for _, o := range outs {
		f(o.item, o.result, o.err)
	}
}
