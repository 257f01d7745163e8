// Command testworker is the worker process of procpool's own tests and
// benchmarks, built on package worker. Build it with internal/testbin.
//
// Job types (payloads are ASCII unless said otherwise):
//
//	echo                 returns its payload
//	sha512               returns the 64-byte SHA-512 of its payload
//	sha512v              VALUE {Size int; Seed byte}: hashes Size bytes it makes
//	                     itself (byte i = Seed+i) and returns the digest as bin
//	echov                VALUE {Data []byte; N int}: returns its argument
//	repeat               returns <n> zero bytes
//	noop                 returns nothing, at once
//	noopv                VALUE: takes any value, returns nil, at once
//	sleep                sleeps <ms> milliseconds, or until cancelled
//	sleep_ignore_cancel  sleeps <ms> milliseconds whatever happens
//	slowecho             "<ms>:<data>": sleeps <ms> milliseconds, then returns
//	                     <data>, a slice of its payload read after the sleep
//	exit                 exits the process with code <code>, without answering
//	panic                panics with its payload as the message
//	spam                 writes <n> lines to stdout and to stderr, then echoes
//	garbage              writes invalid bytes onto the protocol pipe (fd 4):
//	                     "" or "malformed" a frame that is not msgpack,
//	                     "huge" a frame header announcing 4 GiB, "badspan" a
//	                     response whose payload lies outside the shared
//	                     memory region; then waits for cancellation
//	alloc                allocates and touches <MiB> MiB, keeps it, returns the
//	                     total kept in MiB
//	grandchild           starts a copy of itself that sleeps forever, returns
//	                     its pid; payload "stdio" lets it inherit stdout and
//	                     stderr (otherwise /dev/null), "setsid" too, in a
//	                     session of its own
//	pid                  returns its pid (in its own PID namespace: 2 under
//	                     childproc's containment)
//	pidns                returns its PID namespace and its pid there
//	                     ("pid:[4026532285] 2"), by which the host finds it
//	                     in /proc
//	info                 returns "id=<id> attempt=<n> traceparent=<tp>" from
//	                     worker.Info
//	stream               sends <n> chunks "chunk <i>" (worker.Send), then
//	                     returns "done"
//	budget               returns the milliseconds left before its context's
//	                     deadline, or "none"
//	env                  returns its environment, one variable per line
//	selfinfo             returns /proc/self/status, then per thread: tid, nice
//	                     and Cpus_allowed_list
//	hang_all             stops the whole process with SIGSTOP: it answers
//	                     nothing, pings included, until SIGCONT or SIGKILL
//	mixed                "<type>:<payload>" runs the BLOB job type <type>
//	                     with <payload>: lets one pool mix good and bad jobs
//
// Environment switches:
//
//	TESTWORKER_EXIT_AT_START=<code>     exit with code before the handshake
//	TESTWORKER_EXIT_AT_START_FILE=<path> exit with code 3 before the handshake
//	                                    while path exists
//	TESTWORKER_HANDSHAKE_DELAY=<ms>     wait before serving
//	TESTWORKER_NO_PONG=1                never answer pings (the pings are
//	                                    dropped before the SDK sees them)
//	TESTWORKER_MAX_FRAME=<bytes>        the largest frame the worker accepts
//	TESTWORKER_NO_SHARED=1              close fd 5 before serving, so that
//	                                    the shared memory region cannot be
//	                                    mapped and the worker declines it
//	TESTWORKER_MODE=sleep_forever       do nothing but sleep (the grandchild)
//	TESTWORKER_ROGUE=<mode>             break the protocol as rogue.go says
package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/worker"
)

func main() {
	if os.Getenv("TESTWORKER_MODE") == "sleep_forever" {
		time.Sleep(math.MaxInt64)
	}
	if v := os.Getenv("TESTWORKER_EXIT_AT_START"); v != "" {
		code, _ := strconv.Atoi(v)
		fmt.Fprintf(os.Stderr, "testworker: exiting at start with code %d\n", code)
		os.Exit(code)
	}
	if p := os.Getenv("TESTWORKER_EXIT_AT_START_FILE"); p != "" {
		if _, err := os.Stat(p); err == nil {
			fmt.Fprintf(os.Stderr, "testworker: %s exists, exiting at start with code 3\n", p)
			os.Exit(3)
		}
	}
	if v := os.Getenv("TESTWORKER_HANDSHAKE_DELAY"); v != "" {
		ms, _ := strconv.Atoi(v)
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}

	mode := rogueMode()
	switch mode {
	case "":
	case "small": // serves normally, but accepts frames of 4 KiB only
		os.Setenv("TESTWORKER_MAX_FRAME", "4096")
	default:
		os.Exit(runRogue(mode))
	}
	if os.Getenv("TESTWORKER_NO_SHARED") == "1" {
		_ = syscall.Close(5)
	}
	s := &worker.Server{}
	if v := os.Getenv("TESTWORKER_MAX_FRAME"); v != "" {
		s.MaxFrame, _ = strconv.Atoi(v)
	}
	register(s)
	if os.Getenv("TESTWORKER_NO_PONG") == "1" {
		os.Exit(serveWithoutPongs(s))
	}
	worker.Main(s)
}

// echoValue is the argument and result of the echov job type.
type echoValue struct {
	Data []byte
	N    int
}

// sha512Value is the argument of the sha512v job type.
type sha512Value struct {
	Size int
	Seed byte
}

func register(s *worker.Server) {
	blobs := map[string]worker.HandlerFunc{}
	handle := func(name string, h worker.HandlerFunc) {
		blobs[name] = h
		s.Handle(name, h)
	}
	defer s.Handle("mixed", func(ctx context.Context, p []byte) ([]byte, error) {
		name, arg, _ := strings.Cut(string(p), ":")
		h, ok := blobs[name]
		if !ok {
			return nil, worker.Errorf(codec.CodeBadPayload, "mixed: no job type %q", name)
		}
		return h(ctx, []byte(arg))
	})
	handle("echo", func(ctx context.Context, p []byte) ([]byte, error) { return p, nil })
	handle("sha512", func(ctx context.Context, p []byte) ([]byte, error) {
		d := sha512.Sum512(p)
		return d[:], nil
	})
	worker.HandleValue(s, "sha512v", func(ctx context.Context, in sha512Value) ([]byte, error) {
		if in.Size < 0 || in.Size > 1<<30 {
			return nil, worker.Errorf("bad_size", "size %d out of range", in.Size)
		}
		buf := make([]byte, in.Size)
		for i := range buf {
			buf[i] = in.Seed + byte(i)
		}
		d := sha512.Sum512(buf)
		return d[:], nil
	})
	worker.HandleValue(s, "echov", func(ctx context.Context, in echoValue) (echoValue, error) { return in, nil })
	handle("repeat", func(ctx context.Context, p []byte) ([]byte, error) {
		n, err := number(p)
		if err != nil {
			return nil, err
		}
		return make([]byte, n), nil
	})
	handle("noop", func(ctx context.Context, p []byte) ([]byte, error) { return nil, nil })
	worker.HandleValue(s, "noopv", func(ctx context.Context, in msgpack.RawMessage) (any, error) { return nil, nil })
	handle("sleep", func(ctx context.Context, p []byte) ([]byte, error) {
		d, err := millis(p)
		if err != nil {
			return nil, err
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return []byte("slept"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	handle("slowecho", func(ctx context.Context, p []byte) ([]byte, error) {
		ms, data, _ := bytes.Cut(p, []byte(":"))
		d, err := millis(ms)
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
		return data, nil // read where it lies, after the sleep
	})
	handle("sleep_ignore_cancel", func(ctx context.Context, p []byte) ([]byte, error) {
		d, err := millis(p)
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
		return []byte("slept"), nil
	})
	handle("exit", func(ctx context.Context, p []byte) ([]byte, error) {
		code, err := number(p)
		if err != nil {
			return nil, err
		}
		os.Exit(code)
		return nil, nil
	})
	handle("panic", func(ctx context.Context, p []byte) ([]byte, error) {
		panic("testworker: " + string(p))
	})
	handle("spam", func(ctx context.Context, p []byte) ([]byte, error) {
		n, err := number(p)
		if err != nil {
			return nil, err
		}
		for i := range n {
			fmt.Fprintf(os.Stdout, "spam stdout %d\n", i)
			fmt.Fprintf(os.Stderr, "spam stderr %d\n", i)
		}
		return p, nil
	})
	handle("garbage", garbage)
	handle("alloc", alloc)
	handle("grandchild", grandchild)
	handle("pid", func(ctx context.Context, p []byte) ([]byte, error) {
		return []byte(strconv.Itoa(os.Getpid())), nil
	})
	handle("pidns", func(ctx context.Context, p []byte) ([]byte, error) {
		ns, err := os.Readlink("/proc/self/ns/pid")
		return []byte(ns + " " + strconv.Itoa(os.Getpid())), err
	})
	handle("gomaxprocs", func(ctx context.Context, p []byte) ([]byte, error) {
		return []byte(strconv.Itoa(runtime.GOMAXPROCS(0))), nil
	})
	handle("env", func(ctx context.Context, p []byte) ([]byte, error) {
		return []byte(strings.Join(os.Environ(), "\n")), nil
	})
	handle("selfinfo", selfinfo)
	handle("info", func(ctx context.Context, p []byte) ([]byte, error) {
		info, ok := worker.Info(ctx)
		if !ok {
			return nil, worker.Errorf("no_info", "no job info in the handler's context")
		}
		return []byte(fmt.Sprintf("id=%d attempt=%d traceparent=%s", info.ID, info.Attempt, info.TraceParent)), nil
	})
	handle("stream", func(ctx context.Context, p []byte) ([]byte, error) {
		n, err := number(p)
		if err != nil {
			return nil, err
		}
		for i := range n {
			err := worker.Send(ctx, []byte(fmt.Sprintf("chunk %d", i)))
			if errors.Is(err, worker.ErrNotStreaming) {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		return []byte("done"), nil
	})
	handle("budget", func(ctx context.Context, p []byte) ([]byte, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return []byte("none"), nil
		}
		return []byte(strconv.FormatInt(time.Until(dl).Milliseconds(), 10)), nil
	})
	handle("hang_all", hangAll)
}

func number(p []byte) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(p)))
	if err != nil {
		return 0, worker.Errorf(codec.CodeBadPayload, "want a decimal number: %v", err)
	}
	return n, nil
}

func millis(p []byte) (time.Duration, error) {
	n, err := number(p)
	return time.Duration(n) * time.Millisecond, err
}
