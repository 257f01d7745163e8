package conformance

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// rawWorker is the worker under test driven over the protocol directly,
// as docs/protocol.md describes the host, without package procpool: the
// checks that need what the host does not show (the exit status, replies
// during a drain) or does not do yet (keep fd 3 open after shutdown).
type rawWorker struct {
	t    *testing.T
	proc *childproc.Process
	w    *codec.Writer
	msgs chan codec.Message // what the worker sent, in order
	rerr chan error         // the reader's end
	in   bool               // fd 3 still open
}

func startRaw(t *testing.T, w Worker) *rawWorker {
	t.Helper()
	p, err := childproc.Start(childproc.Spec{Path: w.Command, Args: w.Args, Dir: w.Dir, Env: w.Env, Name: "conformance"})
	if err != nil {
		t.Fatalf("starting the worker: %v", err)
	}
	return newRaw(t, p)
}

func (rw *rawWorker) send(m codec.Message) {
	rw.t.Helper()
	if err := rw.w.Write(&m); err != nil {
		rw.t.Fatalf("sending %s: %v", m.Kind, err)
	}
}

// next returns the worker's next message, failing the test after
// callTimeout or at the end of its stream.
func (rw *rawWorker) next(what string) codec.Message {
	rw.t.Helper()
	select {
	case m, ok := <-rw.msgs:
		if !ok {
			rw.t.Fatalf("waiting for %s: the worker's stream ended (%v); stderr: %q", what, <-rw.rerr, rw.proc.StderrTail())
		}
		return m
	case <-time.After(callTimeout):
		rw.t.Fatalf("no %s from the worker within %v", what, callTimeout)
	}
	panic("unreachable")
}

// handshake sends hello without a shared memory region and checks ready.
func (rw *rawWorker) handshake() codec.Message {
	rw.t.Helper()
	rw.send(codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame})
	m := rw.next("ready")
	if m.Kind != codec.KindReady {
		rw.t.Fatalf("first message %s, want ready", m.Kind)
	}
	return m
}

// responses collects the worker's messages until it has answered every id
// in ids, answering nothing; it returns responses by id and the other
// messages in order.
func (rw *rawWorker) responses(ids ...uint64) (map[uint64]codec.Message, []codec.Message) {
	rw.t.Helper()
	got := map[uint64]codec.Message{}
	var other []codec.Message
	for len(got) < len(ids) {
		m := rw.next(fmt.Sprintf("the responses to %v", ids))
		if m.Kind != codec.KindResponse {
			other = append(other, m)
			continue
		}
		if !slices.Contains(ids, m.ID) {
			rw.t.Fatalf("response to id %d, which is not among %v", m.ID, ids)
		}
		if _, dup := got[m.ID]; dup {
			rw.t.Fatalf("two responses to id %d", m.ID)
		}
		got[m.ID] = m
	}
	return got, other
}

// answers collects the worker's answers until every id in ids has one,
// taking responses out of batch responses, and fails the test on an answer
// to another id, a second answer, or a batch response with nothing but
// responses. It returns the answers by id, the number of batch responses
// and the other messages in order.
func (rw *rawWorker) answers(ids ...uint64) (map[uint64]codec.Message, int, []codec.Message) {
	rw.t.Helper()
	return rw.answersShared(nil, ids...)
}

// answersShared is answers for a worker with the shared memory region shm
// (nil for none): it frees each answered request's block, and reads the
// results in the region, in the order of the stream, into Payload.
func (rw *rawWorker) answersShared(shm *sharedmem.Host, ids ...uint64) (map[uint64]codec.Message, int, []codec.Message) {
	rw.t.Helper()
	got := map[uint64]codec.Message{}
	batches := 0
	var other []codec.Message
	take := func(m codec.Message) {
		rw.t.Helper()
		if m.Kind != codec.KindResponse {
			rw.t.Fatalf("a %s inside a batch response", m.Kind)
		}
		if !slices.Contains(ids, m.ID) {
			rw.t.Fatalf("an answer to id %d, which is not among %v", m.ID, ids)
		}
		if _, dup := got[m.ID]; dup {
			rw.t.Fatalf("two answers to id %d", m.ID)
		}
		if shm != nil {
			shm.Release(m.ID)
			if m.Shared {
				b, err := shm.Response(m.Span.Offset, m.Span.Length)
				if err != nil {
					rw.t.Fatalf("the result of %d in the shared region: %v", m.ID, err)
				}
				m.Payload = bytes.Clone(b)
				shm.Consumed()
			}
		} else if m.Shared {
			rw.t.Fatalf("the result of %d in a shared region the worker does not have", m.ID)
		}
		got[m.ID] = m
	}
	for len(got) < len(ids) {
		m := rw.next(fmt.Sprintf("the answers to %v", ids))
		switch m.Kind {
		case codec.KindResponse:
			take(m)
		case codec.KindBatchResponse:
			batches++
			for _, it := range m.Items {
				take(it)
			}
		default:
			other = append(other, m)
		}
	}
	return got, batches, other
}

// chunks reads the next n messages, which must be chunks of id, and
// returns their bytes (read from the region shm when they lie there).
func (rw *rawWorker) chunks(id uint64, n int, shm *sharedmem.Host) [][]byte {
	rw.t.Helper()
	var out [][]byte
	for len(out) < n {
		m := rw.next(fmt.Sprintf("chunk %d of %d of job %d", len(out)+1, n, id))
		if m.Kind != codec.KindChunk || m.ID != id {
			rw.t.Fatalf("want chunk %d of job %d, got %s %d (%s %s)", len(out)+1, id, m.Kind, m.ID, m.ErrCode, m.ErrMessage)
		}
		if m.Shared {
			if shm == nil {
				rw.t.Fatalf("a chunk in a shared region the worker does not have")
			}
			b, err := shm.Response(m.Span.Offset, m.Span.Length)
			if err != nil {
				rw.t.Fatalf("a chunk in the shared region: %v", err)
			}
			m.Payload = bytes.Clone(b)
			shm.Consumed()
		}
		out = append(out, m.Payload)
	}
	return out
}

// quiet fails the test if the worker sends anything for d; what names
// what that would be.
func (rw *rawWorker) quiet(d time.Duration, what string) {
	rw.t.Helper()
	select {
	case m, ok := <-rw.msgs:
		if ok {
			rw.t.Fatalf("%s: the worker sent %s %d", what, m.Kind, m.ID)
		}
	case <-time.After(d):
	}
}

func (rw *rawWorker) closeInput() {
	if rw.in {
		rw.in = false
		_ = rw.proc.Input().Close()
	}
}

// exit waits for the worker to exit, then checks the rest of its stream:
// every message left must be allowed (nil: none is).
func (rw *rawWorker) exit(allowed func(codec.Message) bool) childproc.ExitInfo {
	rw.t.Helper()
	select {
	case <-rw.proc.Done():
	case <-time.After(callTimeout):
		rw.t.Fatalf("the worker did not exit within %v; stderr: %s", callTimeout, strings.Join(rw.proc.StderrTail(), "\n"))
	}
	info := rw.proc.Exit()
	for m := range rw.msgs {
		if allowed == nil || !allowed(m) {
			rw.t.Errorf("unexpected %s (id %d, code %q) at the end", m.Kind, m.ID, m.ErrCode)
		}
	}
	return info
}

// bigID and bigSeq need all 64 bits: a worker that reads them as doubles
// (JavaScript numbers) answers another id.
const (
	bigID  = 1<<63 + 12345
	bigSeq = 1<<62 + 7
)

// checkHandshake: ready speaks version 1, announces a frame limit and a
// pid and lists every job type of the contract; 64-bit ids and sequence
// numbers come back intact; an unknown job type is answered
// unknown_job_type; a cancel for an unknown id is ignored.
func checkHandshake(t *testing.T, w Worker) {
	rw := startRaw(t, w)
	ready := rw.handshake()
	if ready.Version != codec.Version || ready.MaxFrame == 0 || ready.PID <= 0 {
		t.Errorf("ready: version %d, maxFrame %d, pid %d", ready.Version, ready.MaxFrame, ready.PID)
	}
	for _, jt := range JobTypes {
		if !slices.Contains(ready.JobTypes, jt) {
			t.Errorf("ready lists %v, without %q (the host kills a worker whose ready lacks its job type)", ready.JobTypes, jt)
		}
	}
	if ready.SharedSize != 0 {
		t.Errorf("ready echoes a shared memory size of %d, but hello offered none", ready.SharedSize)
	}
	rw.send(codec.Message{Kind: codec.KindCancel, ID: 999})
	rw.send(codec.Message{Kind: codec.KindRequest, ID: bigID, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("id")})
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "no-such-type", PayloadKind: codec.Blob})
	rw.send(codec.Message{Kind: codec.KindPing, ID: bigSeq})
	got, other := rw.responses(bigID, 2)
	if m := got[bigID]; m.ErrCode != "" || string(m.Payload) != "id" || m.PayloadKind != codec.Blob {
		t.Errorf("echo with id 2^63+12345: code %q payload %q kind %v", m.ErrCode, m.Payload, m.PayloadKind)
	}
	if m := got[2]; m.ErrCode != codec.CodeUnknownJobType {
		t.Errorf("request for an unknown job type: code %q, want %q", m.ErrCode, codec.CodeUnknownJobType)
	}
	if len(other) == 0 {
		other = append(other, rw.next("pong"))
	}
	if m := other[0]; m.Kind != codec.KindPong || m.ID != bigSeq {
		t.Errorf("answer to ping 2^62+7: %s %d", m.Kind, m.ID)
	}
	rw.closeInput()
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after the host went away: %s, want exit 0", info)
	}
}

// checkShutdownDrains: after shutdown, as docs/protocol.md §8.6 says, the
// worker keeps reading fd 3 and answering pings, answers new requests
// shutting_down, finishes the running job with its result, and exits 0 on
// its own, fd 3 still open.
func checkShutdownDrains(t *testing.T, w Worker) {
	rw := startRaw(t, w)
	rw.handshake()
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "sleep", PayloadKind: codec.Blob, Payload: []byte("700")})
	time.Sleep(100 * time.Millisecond) // let it start
	rw.send(codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	rw.send(codec.Message{Kind: codec.KindPing, ID: 77})
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("late")})
	got, other := rw.responses(1, 2)
	if m := got[1]; m.ErrCode != "" || string(m.Payload) != "700" {
		t.Errorf("the job running at shutdown: code %q (%s), payload %q; want its result", m.ErrCode, m.ErrMessage, m.Payload)
	}
	if m := got[2]; m.ErrCode != codec.CodeShuttingDown {
		t.Errorf("a request after shutdown: code %q, want %q", m.ErrCode, codec.CodeShuttingDown)
	}
	if len(other) != 1 || other[0].Kind != codec.KindPong || other[0].ID != 77 {
		t.Errorf("while draining, the worker sent %v besides the responses, want one pong 77", kinds(other))
	}
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after shutdown: %s, want exit 0; stderr: %q", info, info.StderrTail)
	}
}

// checkShutdownThenEOF: the host of today closes fd 3 right after
// shutdown; the end of stream does not cut the grace short: the running
// job still ends with its result, and the worker exits 0.
func checkShutdownThenEOF(t *testing.T, w Worker) {
	rw := startRaw(t, w)
	rw.handshake()
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "sleep", PayloadKind: codec.Blob, Payload: []byte("700")})
	time.Sleep(100 * time.Millisecond)
	rw.send(codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	rw.closeInput()
	got, _ := rw.responses(1)
	if m := got[1]; m.ErrCode != "" || string(m.Payload) != "700" {
		t.Errorf("the job running at shutdown: code %q (%s), payload %q; want its result", m.ErrCode, m.ErrMessage, m.Payload)
	}
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after shutdown and end of stream: %s, want exit 0; stderr: %q", info, info.StderrTail)
	}
}

// checkHostGone: an end of stream on fd 3 without shutdown makes the
// worker stop its jobs and exit 0 promptly.
func checkHostGone(t *testing.T, w Worker) {
	rw := startRaw(t, w)
	rw.handshake()
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "sleep", PayloadKind: codec.Blob, Payload: []byte("600000")})
	time.Sleep(100 * time.Millisecond)
	rw.closeInput()
	// At most a cancelled response to the job; writes may fail already.
	cancelled := func(m codec.Message) bool {
		return m.Kind == codec.KindResponse && m.ID == 1 && m.ErrCode == codec.CodeCancelled
	}
	if info := rw.exit(cancelled); !info.Success() {
		t.Errorf("exit after the host went away: %s, want exit 0; stderr: %q", info, info.StderrTail)
	}
}

func kinds(ms []codec.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %d", m.Kind, m.ID))
	}
	return out
}
