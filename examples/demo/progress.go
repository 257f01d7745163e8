package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress refreshes one status line every 200 ms on a terminal (with \r),
// or prints a line a second otherwise.
type progress struct {
	kinds []*kind
	start time.Time
	tty   bool
	width int // terminal columns, 0 if unknown
	phase atomic.Pointer[string]
	quit  chan struct{}
	done  chan struct{}
}

func startProgress(ctx context.Context, kinds []*kind) *progress {
	p := &progress{kinds: kinds, start: time.Now(), tty: isTerminal(os.Stdout),
		quit: make(chan struct{}), done: make(chan struct{})}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil {
		p.width = int(ws.Col)
	}
	p.setPhase("running")
	fmt.Println("progress: jobs done/total, q = jobs queued, w = workers busy/idle/starting")
	go func() {
		defer close(p.done)
		every := 1 // ticks between lines
		if !p.tty {
			every = 5
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-p.quit:
				p.print(ctx, true)
				return
			case <-t.C:
				if n%every == 0 {
					p.print(ctx, false)
				}
			}
		}
	}()
	return p
}

func (p *progress) setPhase(s string) { p.phase.Store(&s) }

func (p *progress) stop() {
	close(p.quit)
	<-p.done
}

func (p *progress) print(ctx context.Context, last bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs %-7s", time.Since(p.start).Seconds(), *p.phase.Load())
	for _, k := range p.kinds {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := k.router.Stats(sctx)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, " | %s: %v", k.name, err)
			continue
		}
		fmt.Fprintf(&b, " | %s %*d/%d q %3d w %d/%d/%d",
			k.name, len(strconv.Itoa(k.total)), k.done.Load(), k.total, s.Queued, s.Busy, s.Idle, s.Starting)
	}
	line := b.String()
	switch {
	case !p.tty:
		fmt.Println(line)
		return
	case p.width > 0 && len(line) >= p.width:
		line = line[:p.width-1] // a wrapped line cannot be redrawn with \r
	}
	fmt.Print("\r\x1b[K", line)
	if last {
		fmt.Println()
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
