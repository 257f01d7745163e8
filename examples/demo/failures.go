package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool"
)

// failures shows what a few failed jobs look like to the caller, and
// reports whether each failed as expected.
func failures(ctx context.Context, value *procpool.Router) bool {
	if ctx.Err() != nil {
		return false
	}
	fmt.Println("\nfailure paths (sha512v):")
	ok := true
	expect := func(what string, took time.Duration, err error, target error) {
		what = fmt.Sprintf("%s (%s):", what, fmtDur(took))
		if errors.Is(err, target) {
			fmt.Printf("  %-39s errors.Is(err, %v): yes\n      %v\n", what, targetName(target), err)
			return
		}
		fmt.Printf("  %-39s errors.Is(err, %v): NO, got %v\n", what, targetName(target), err)
		ok = false
	}

	// A job whose context is cancelled: the caller gets ErrCancelled (and
	// the context's own error) at once; the worker's handler sees its ctx
	// end and stops, and the worker lives on.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := procpool.CallValue[[]byte](cctx, value, Generate{Size: 32 << 30})
	cancel()
	expect("32 GiB, cancel after 100ms", time.Since(start), err, procpool.ErrCancelled)
	if !errors.Is(err, context.Canceled) {
		fmt.Println("      (expected it to match context.Canceled too)")
		ok = false
	}

	// A job that overruns the job type's JobTimeout.
	start = time.Now()
	_, err = procpool.CallValue[[]byte](ctx, value, Generate{Size: 32 << 30})
	expect("32 GiB, JobTimeout 2s", time.Since(start), err, procpool.ErrJobTimeout)

	// An error returned by the worker's handler, with its code.
	start = time.Now()
	_, err = procpool.CallValue[[]byte](ctx, value, Generate{Size: -1})
	expect("size -1, refused by the worker", time.Since(start), err, procpool.ErrRemote)
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		fmt.Printf("      errors.As(err, *RemoteError): code %q\n", re.Code)
	}

	if s, err := value.Stats(ctx); err == nil {
		fmt.Printf("  sha512v now: failed %d (timed out %d), cancelled %d, spawns %d, crashes %d\n",
			s.Failed, s.TimedOut, s.Cancelled, s.Spawns, s.Crashes)
	}
	return ok
}

func targetName(err error) string {
	switch err {
	case procpool.ErrCancelled:
		return "ErrCancelled"
	case procpool.ErrJobTimeout:
		return "ErrJobTimeout"
	case procpool.ErrRemote:
		return "ErrRemote"
	}
	return err.Error()
}
