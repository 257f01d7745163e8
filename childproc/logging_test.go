package childproc_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
)

// blockedLogger returns a logger whose records of the child's output
// block until the returned func is called; call it at the end of the test
// too (register it after start, so that it runs before the Stop).
func blockedLogger() (hclog.Logger, *gate, func()) {
	g := &gate{open: make(chan struct{})}
	var once sync.Once
	open := func() { once.Do(func() { close(g.open) }) }
	return hclog.New(&hclog.LoggerOptions{Output: g, JSONFormat: true, Level: hclog.Trace}), g, open
}

// TestLoggingNeverDelaysTheReap: with a logger that takes no record at
// all, a worker that wrote lines and exited is still reported ended
// (Done), its lines still queued; they are logged once the logger moves.
func TestLoggingNeverDelaysTheReap(t *testing.T) {
	clean(t)
	log, g, open := blockedLogger()
	spec := selfSpec(t, "spam", "2000")
	spec.Logger = log
	p := start(t, spec)
	t.Cleanup(open)
	require.NoError(t, p.Input().Close())
	exit := waitDone(t, p) // fails if the reap waits for the logger
	assert.True(t, exit.Success(), "exit %v", exit)
	open()
	// The lines read before the reap are logged after it.
	require.Eventually(t, func() bool {
		recs := g.c.records(t)
		return len(streamRecords(t, recs, "stdout", p.PID(), "spam"))+droppedLines(recs, "stdout") == 2000
	}, waitLong, waitPoll)
}

// TestEmptyLinesAreBounded: a worker that writes only empty lines to a
// logger that does not keep up gets its lines dropped and counted like
// any others: the backlog bound counts lines, not only bytes.
func TestEmptyLinesAreBounded(t *testing.T) {
	clean(t)
	log, g, open := blockedLogger()
	const lines = 2_000_000
	spec := selfSpec(t, "emptylines", strconv.Itoa(lines))
	spec.Logger = log
	p := start(t, spec)
	t.Cleanup(open)
	require.NoError(t, p.Input().Close())
	waitDone(t, p)
	open()
	var logged, dropped int
	require.Eventually(t, func() bool {
		recs := g.c.records(t)
		logged, dropped = len(streamRecords(t, recs, "stdout", p.PID(), "emptylines")), droppedLines(recs, "stdout")
		return logged+dropped == lines
	}, waitLong, waitPoll, "logged %d + dropped %d of %d", logged, dropped, lines)
	assert.Positive(t, dropped, "empty lines are dropped past the backlog bound")
	assert.Equal(t, uint64(dropped), p.DroppedLines())
}

// TestDroppedLinesAreCountedAndReportedOncePerBurst: lines a logger that
// does not keep up leaves are counted (DroppedLines) and reported in one
// record per run of drops, not one per line.
func TestDroppedLinesAreCountedAndReportedOncePerBurst(t *testing.T) {
	clean(t)
	log, g, open := blockedLogger()
	const lines = 3 * childproc.MaxQueuedLines // one stream's backlog holds MaxQueuedLines
	spec := selfSpec(t, "spam", strconv.Itoa(lines))
	spec.Logger = log
	p := start(t, spec)
	t.Cleanup(open)
	require.NoError(t, p.Input().Close())
	waitDone(t, p)
	open()
	waitLogged(t, p)
	recs := g.c.records(t)
	reports := 0
	for _, r := range recs {
		if r["dropped"] != nil && r["stream"] == "stdout" {
			reports++
		}
	}
	logged, dropped := len(streamRecords(t, recs, "stdout", p.PID(), "spam")), droppedLines(recs, "stdout")
	assert.Equal(t, lines, logged+dropped)
	assert.Positive(t, dropped)
	assert.Equal(t, 1, reports, "one report for one run of drops")
	assert.Equal(t, uint64(droppedLines(recs, "stdout")+droppedLines(recs, "stderr")), p.DroppedLines())
}
