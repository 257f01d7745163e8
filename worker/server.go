package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
)

// HandlerFunc handles one BLOB job: it receives the request's payload and
// returns the response's payload. The payload slice stays valid until the
// handler returns; its buffer is then recycled, so a handler that keeps the
// payload longer, for instance in a goroutine, must copy it. The returned
// slice is written after the handler returns and must not change
// afterwards; it may be (part of) the payload.
//
// ctx is cancelled when the host cancels the job, when the job's timeout
// elapses, when the shutdown grace period runs out and when the host goes
// away. A handler that returns an error after ctx was cancelled is reported
// as codec.CodeCancelled or codec.CodeDeadline, unless the error is an
// *Error with a code; a handler that returns a result is answered with it.
type HandlerFunc func(ctx context.Context, payload []byte) ([]byte, error)

// handler is a registered job type.
type handler struct {
	// kind is the payload kind of the handler's successful responses.
	kind codec.PayloadKind
	// serve runs the job; a VALUE handler leaves its pooled encoder in j.enc.
	serve func(ctx context.Context, j *job) ([]byte, error)
}

// Server serves jobs to a procpool host. Register handlers with Handle and
// HandleValue, then call Serve (or Main) once the registration is complete.
// A Server's fields must not change while it serves.
type Server struct {
	// MaxFrame is the largest frame this worker accepts from the host,
	// header excluded; the worker announces it in the handshake, and the
	// host must not send larger requests. 0 means codec.DefaultMaxFrame.
	MaxFrame int

	// Logger receives the worker's own diagnostics: handler panics with
	// their stacks, protocol errors, failed writes. Nil means a logger
	// writing to stderr, which the host captures. Nothing is ever written
	// to stdout.
	Logger *log.Logger

	// DrainTimeout bounds each wait for running jobs when serving ends
	// abnormally: after the host went away or the shutdown grace ran out
	// (jobs cancelled, then waited for), and after a handler panicked
	// (the other jobs may finish normally, then are cancelled and waited
	// for once more). 0 means 500 ms.
	DrainTimeout time.Duration

	// BatchConcurrency bounds how many jobs of one batch request run at
	// once, in the batch's order (a host sends batches only to a worker that
	// negotiated them; see codec.FeatureBatch). 0 means runtime.GOMAXPROCS:
	// right for CPU-bound handlers. Handlers that mostly wait (on I/O, on
	// other processes) want more, or a host that sends them smaller
	// batches: a job of a batch waits for a runner, and its timeout runs
	// meanwhile. Requests sent alone are not bounded: each runs at once.
	BatchConcurrency int

	mu       sync.Mutex
	handlers map[string]*handler
}

// Handle registers h as the handler of BLOB jobs of type jobType. It panics
// if jobType is empty, h is nil or jobType already has a handler.
func (s *Server) Handle(jobType string, h HandlerFunc) {
	if h == nil {
		panic("worker: nil handler for job type " + fmt.Sprintf("%q", jobType))
	}
	s.register(jobType, &handler{
		kind: codec.Blob,
		serve: func(ctx context.Context, j *job) ([]byte, error) {
			return h(ctx, j.payload)
		},
	})
}

// HandleValue registers h as the handler of VALUE jobs of type jobType on
// s. The request's payload is decoded with msgpack into an In, and h's Out
// is encoded with msgpack as the response's payload. A payload that does not
// decode into an In is answered with codec.CodeBadPayload without calling h.
// It panics if jobType is empty, h is nil or jobType already has a handler.
func HandleValue[In, Out any](s *Server, jobType string, h func(ctx context.Context, in In) (Out, error)) {
	if h == nil {
		panic("worker: nil handler for job type " + fmt.Sprintf("%q", jobType))
	}
	inType := reflect.TypeFor[In]().String()
	s.register(jobType, &handler{
		kind: codec.Value,
		serve: func(ctx context.Context, j *job) ([]byte, error) {
			var in In
			if err := decodeValue(j.payload, &in); err != nil {
				return nil, &Error{Code: codec.CodeBadPayload, Message: fmt.Sprintf("decoding %s: %v", inType, err)}
			}
			out, err := h(ctx, in)
			if err != nil {
				return nil, err
			}
			e := getEncoder()
			j.enc = e
			if err := e.enc.Encode(&out); err != nil {
				return nil, fmt.Errorf("encoding result: %w", err)
			}
			return e.buf.Bytes(), nil
		},
	})
}

func (s *Server) register(jobType string, h *handler) {
	if jobType == "" {
		panic("worker: empty job type")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.handlers[jobType]; dup {
		panic(fmt.Sprintf("worker: job type %q registered twice", jobType))
	}
	if s.handlers == nil {
		s.handlers = make(map[string]*handler)
	}
	s.handlers[jobType] = h
}

// JobTypes returns the registered job types, sorted.
func (s *Server) JobTypes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.handlers))
	for name := range s.handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (s *Server) logger() *log.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return defaultLogger
}

var defaultLogger = log.New(os.Stderr, "", 0) // the host adds time and worker to each line

func (s *Server) drainTimeout() time.Duration {
	if s.DrainTimeout > 0 {
		return s.DrainTimeout
	}
	return 500 * time.Millisecond
}

// Serve serves the host that started this process over the protocol pipes
// it passed as file descriptors 3 (requests, read) and 4 (responses,
// written). It marks both close-on-exec, so that processes the handlers
// start do not hold the pipes open, and closes them before returning. When
// the host's hello announces a shared memory region, Serve maps the one the
// host passed as file descriptor 5 and closes that descriptor; ServeConn
// never uses one.
//
// Serve returns nil after a clean shutdown (a shutdown message, then every
// running job finished or the grace period ran out) and when the host went
// away (end of file on fd 3). It returns a *PanicError after a handler
// panicked, and another error after a protocol error or when fds 3 and 4 are
// not open.
func (s *Server) Serve() error {
	in, out, err := hostFiles()
	if err != nil {
		return err
	}
	defer out.Close()
	defer in.Close()
	return s.serve(context.Background(), in, out, mapHostRegion)
}

// ServeConn is Serve over any pair of streams: it reads the host's messages
// from r and writes its own to w. It returns as Serve does, or with
// ctx.Err() when ctx is cancelled first; ctx is also the parent of every
// job's context. ctx is watched from the end of the handshake on. The error
// ServeConn returns is not logged; Main logs it.
//
// To stop reading before r ends (after a shutdown, a panic or ctx's end),
// ServeConn sets a read deadline in the past if r has SetReadDeadline (as
// *os.File and net.Conn do), or else closes r if it is an io.Closer. If r
// is neither, a read blocked in r may outlive ServeConn; whatever it reads is
// then ignored. ServeConn never closes w and never writes to w after it
// returns.
func (s *Server) ServeConn(ctx context.Context, r io.Reader, w io.Writer) error {
	return s.serve(ctx, r, w, nil)
}

// serve is ServeConn with a way to map the shared memory region the host
// may announce.
func (s *Server) serve(ctx context.Context, r io.Reader, w io.Writer, mapShared func(uint64) (*region, error)) error {
	c := newConn(s, r, w, mapShared)
	if err := c.handshake(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // the host went away before saying hello
		}
		return err
	}
	return c.serve(ctx)
}

// Main serves the host with s.Serve, then exits the process: with ExitOK
// (0) after a clean shutdown or when the host went away, ExitPanic (70)
// after a handler panicked, and ExitError (1) after any other error, which
// it logs. It is meant to be the whole of a worker's main function, after
// the handlers are registered.
func Main(s *Server) {
	err := s.Serve()
	os.Exit(exitCode(s, err))
}

func exitCode(s *Server, err error) int {
	if err == nil {
		return ExitOK
	}
	var p *PanicError
	if errors.As(err, &p) {
		return ExitPanic
	}
	s.logger().Print(err)
	return ExitError
}
