package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

// A rogue worker speaks the protocol by hand, without the SDK, and breaks it
// in the way TESTWORKER_ROGUE names. It serves every job type listed in
// TESTWORKER_ROGUE_TYPES (comma-separated; default "rogue"). With
// TESTWORKER_ROGUE_ONCE=<path>, only the first worker started (the one that
// creates path) is rogue; later ones serve normally with the SDK.
//
// Modes, acting on every request unless said otherwise:
//
//	unknown_id      answers with an id the host never sent
//	duplicate       answers twice
//	flood           on the first request, writes 32 MiB responses for ids
//	                the host never sent, without end
//	wrong_pong      answers nothing but sends a pong with a wrong sequence
//	                number every 50 ms (and ignores pings)
//	close_answers   on the first request, closes fd 4 and sleeps
//	no_read         after the handshake, reads nothing more and sleeps
//	bad_version     answers hello with protocol version 99 and frame limit 1
//	kind_mismatch   answers a VALUE request with a BLOB result "f" and a BLOB
//	                request with the VALUE 102
//	trailing        answers with a VALUE result of two values
//	exit_on_shutdown exits with code 3 when asked to stop
//	answer_exit     answers with error code "panic", then exits 70 at once,
//	                as the SDK does after a handler panicked
//	small           serves normally with the SDK, accepting frames of 4 KiB
//	                only (with TESTWORKER_ROGUE_ONCE: the first worker only)
//
// A rogue worker answers pings (but wrong_pong) and exits 0 at the end of
// fd 3 or at shutdown (but exit_on_shutdown).
type rogue struct {
	mu    sync.Mutex // serialises writes (flood and wrong_pong write from goroutines)
	mode  string
	in    *codec.Reader
	out   *bufio.Writer
	w     *codec.Writer
	types []string
}

// rogueMode returns the rogue mode this process runs, "" for none.
func rogueMode() string {
	mode := os.Getenv("TESTWORKER_ROGUE")
	if mode == "" {
		return ""
	}
	if path := os.Getenv("TESTWORKER_ROGUE_ONCE"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return "" // not the first: serve normally
		}
		f.Close()
	}
	return mode
}

func runRogue(mode string) int {
	types := strings.Split(os.Getenv("TESTWORKER_ROGUE_TYPES"), ",")
	if types[0] == "" {
		types = []string{"rogue"}
	}
	in, out := os.NewFile(3, "host-in"), os.NewFile(4, "host-out")
	r := &rogue{mode: mode, in: codec.NewReader(in, 0), types: types}
	r.out = bufio.NewWriter(out)
	r.w = codec.NewWriter(r.out, 0)
	var m codec.Message
	if err := r.in.Read(&m); err != nil || m.Kind != codec.KindHello {
		fmt.Fprintf(os.Stderr, "rogue: no hello: %v\n", err)
		return 2
	}
	ready := codec.Message{Kind: codec.KindReady, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame, PID: os.Getpid(), JobTypes: r.types}
	if mode == "bad_version" {
		ready.Version, ready.MaxFrame = 99, 1
	}
	r.send(&ready)
	if mode == "bad_version" {
		time.Sleep(time.Hour) // the host must refuse us and kill us
	}
	if mode == "no_read" {
		time.Sleep(time.Hour)
	}
	if mode == "wrong_pong" {
		go func() {
			for {
				time.Sleep(50 * time.Millisecond)
				r.send(&codec.Message{Kind: codec.KindPong, ID: 12345})
			}
		}()
	}
	for {
		if err := r.in.Read(&m); err != nil {
			return 0
		}
		switch m.Kind {
		case codec.KindPing:
			if mode != "wrong_pong" {
				r.send(&codec.Message{Kind: codec.KindPong, ID: m.ID})
			}
		case codec.KindShutdown:
			if mode == "exit_on_shutdown" {
				return 3
			}
			return 0
		case codec.KindRequest:
			if code, exit := r.request(&m); exit {
				return code
			}
		}
	}
}

// request answers one request as the mode says; exit reports whether the
// process should end now, with code.
func (r *rogue) request(m *codec.Message) (code int, exit bool) {
	resp := codec.Message{Kind: codec.KindResponse, ID: m.ID, PayloadKind: m.PayloadKind, Payload: m.Payload}
	switch r.mode {
	case "unknown_id":
		resp.ID = m.ID + 1<<40
	case "duplicate":
		r.send(&resp)
	case "flood":
		go func() {
			big := make([]byte, 32<<20)
			for i := uint64(1); ; i++ {
				r.send(&codec.Message{Kind: codec.KindResponse, ID: 1<<50 + i, Payload: big})
			}
		}()
		return 0, false
	case "wrong_pong":
		return 0, false
	case "close_answers":
		_ = syscall.Close(4)
		time.Sleep(time.Hour)
	case "kind_mismatch":
		if m.PayloadKind == codec.Value {
			resp.PayloadKind, resp.Payload = codec.Blob, []byte("f")
		} else {
			b, _ := msgpack.Marshal(102)
			resp.PayloadKind, resp.Payload = codec.Value, b
		}
	case "trailing":
		one, _ := msgpack.Marshal(1)
		resp.PayloadKind, resp.Payload = codec.Value, append(one, one...)
	case "answer_exit":
		resp.ErrCode, resp.ErrMessage, resp.Payload = codec.CodePanic, "panic: leaving", nil
		r.send(&resp)
		return 70, true
	}
	r.send(&resp)
	return 0, false
}

// send writes m, bypassing the codec's value check for the trailing mode.
func (r *rogue) send(m *codec.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "trailing" && m.Kind == codec.KindResponse {
		r.sendRaw(m)
		return
	}
	if r.w.Write(m) == nil {
		_ = r.out.Flush()
	}
}

// sendRaw encodes a response by hand: [4, id, "", "", 1, <payload bytes>].
func (r *rogue) sendRaw(m *codec.Message) {
	var body []byte
	body = append(body, 0x96, byte(codec.KindResponse))
	id, _ := msgpack.Marshal(m.ID)
	body = append(body, id...)
	body = append(body, 0xa0, 0xa0, byte(m.PayloadKind))
	body = append(body, m.Payload...)
	hdr := []byte{0, 0, 0, 0}
	n := len(body)
	hdr[0], hdr[1], hdr[2], hdr[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	r.out.Write(hdr)
	r.out.Write(body)
	r.out.Flush()
}
