package actors

// How a worker actor's process ends: its output closes, it fails, it is
// asked to stop, it exits; and the report the router gets.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/supervisor"
)

// onLinkClosed acts on the end of the worker's output: after the exit it
// completes the report; before, the end is a failure unless the process is
// exiting or was asked to stop.
func (w *workerActor) onLinkClosed(ctx actor.Context, err error) {
	if w.exit != nil {
		w.report(ctx)
		return
	}
	ending := errors.Is(err, io.EOF) || errors.Is(err, codec.ErrTruncated)
	switch {
	case ending && (w.stopAsked || w.failure != nil || w.proc.Exiting()):
		// It exits: the exit tells the rest.
	case errors.Is(err, io.EOF):
		w.fail(supervisor.ProtocolFailure, fmt.Errorf("%w: the worker closed its output (fd 4) while running", errProtocol))
	case errors.Is(err, errHandshake):
		w.fail(supervisor.StartupFailure, err)
	case errors.Is(err, errStalled):
		w.fail(supervisor.HeartbeatFailure, err)
	default:
		w.fail(supervisor.ProtocolFailure, err)
	}
}

func (w *workerActor) onHeartbeat() {
	if w.link == nil || w.failure != nil || w.exit != nil || w.stopAsked {
		return
	}
	now := time.Now()
	if waited := w.link.beat(now); waited > w.spec.HeartbeatTimeout {
		w.fail(supervisor.HeartbeatFailure, fmt.Errorf("no pong for %v", waited.Round(time.Millisecond)))
		return
	}
	w.hooks.checkMemory(now, true)
	w.heartbeat.Reset(w.spec.HeartbeatInterval)
}

// fail records the first failure, closes the worker for jobs at once and
// kills the process; its exit is then reported as that failure.
func (w *workerActor) fail(kind supervisor.FailureKind, err error) {
	if w.failure != nil || w.exit != nil {
		return
	}
	w.failure = &supervisor.Failure{Kind: kind, ExitCode: -1, Err: err}
	w.failErr = err
	w.log.Warn("killing worker", "failure", kind, "error", err)
	w.board.close(w.ws)
	if w.link != nil {
		w.link.closeForJobs()
	}
	if !w.stopAsked {
		w.system.Root.Send(w.router, &workerFailing{pid: w.self})
	}
	if w.proc != nil {
		if w.hooks != nil {
			w.hooks.checkMemory(time.Now(), true) // forensics
		}
		_ = w.proc.Kill()
	}
}

// onStop asks the worker to finish its jobs and exit, or kills it.
func (w *workerActor) onStop(msg *stopWorker) {
	if w.exit != nil || (w.stopAsked && !msg.kill) {
		return
	}
	w.stopAsked = true
	if msg.kill {
		w.killAsked = true
		if w.link != nil {
			w.link.closeForJobs()
		}
		if w.proc != nil {
			_ = w.proc.Kill()
		}
		return
	}
	if w.proc == nil {
		return // onStarted sees stopAsked and kills the process
	}
	w.link.shutdown(msg.grace)
	proc, grace := w.proc, msg.grace
	w.env.wg.Add(1)
	go func() {
		defer w.env.wg.Done()
		// fd 3 stays open while the worker drains (it may still read
		// cancels); past the grace it is closed and the process signalled.
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-proc.Done():
		case <-t.C:
			proc.Stop(context.Background(), 0)
		}
	}()
}

func (w *workerActor) onExited(ctx actor.Context, info childproc.ExitInfo) {
	if w.exit != nil {
		return
	}
	w.exit = &info
	w.stopTimers()
	if w.link == nil {
		w.report(ctx)
		return
	}
	w.link.end() // read what the worker wrote before it died
	select {
	case <-w.link.done():
		w.report(ctx)
	default:
		w.after(exitReadGrace, &exitReportTimeout{})
	}
}

// report sends the router the exit report, with the jobs still in flight.
func (w *workerActor) report(ctx actor.Context) {
	if w.reported || w.exit == nil {
		return
	}
	w.reported = true
	w.stopTimers()
	var jobs []*Job
	if w.link != nil {
		jobs = w.link.takeAll()
		w.link.close()
	}
	info := *w.exit
	ex := &workerExited{
		pid: w.self, info: info, cause: w.failErr, jobs: jobs, uptime: time.Since(w.started),
	}
	if w.hooks != nil {
		ex.rss = w.hooks.rss.Load()
	}
	switch {
	case w.stopAsked:
		ex.unclean = !w.killAsked && (info.Signal != 0 || info.Code != 0)
	default:
		f := w.failure
		if f == nil || info.OOMKills > 0 { // the kernel's word on memory comes first
			f = classifyExit(w.ready, info)
		}
		if info.OOMKills > 0 && f.Err == nil {
			f.Err = fmt.Errorf("the OOM killer of its cgroup killed %d of its processes", info.OOMKills)
		}
		f.ExitCode, f.Signal = info.Code, info.Signal
		if f.Err == nil {
			f.Err = errors.New(info.String())
		}
		ex.failure = f
	}
	if ex.failure != nil {
		w.log.Warn("worker failed", "failure", ex.failure.Kind, "exit", info.String(), "jobs_lost", len(jobs))
	} else {
		w.log.Debug("worker exited", "exit", info.String(), "unclean", ex.unclean)
	}
	ctx.Send(w.router, ex)
}

// classifyExit turns an exit nobody asked for into a failure. An OOM kill
// in the worker's cgroup (its Sandbox.Memory, counted by the kernel) is a
// MemoryFailure, whenever it happened.
func classifyExit(handshook bool, info childproc.ExitInfo) *supervisor.Failure {
	switch {
	case info.OOMKills > 0:
		return &supervisor.Failure{Kind: supervisor.MemoryFailure}
	case !handshook:
		return &supervisor.Failure{Kind: supervisor.StartupFailure}
	case info.Signal != 0:
		return &supervisor.Failure{Kind: supervisor.SignalFailure}
	default:
		return &supervisor.Failure{Kind: supervisor.ExitFailure}
	}
}
