package actors

// Messages that may reach an actor after it stopped (a process exit, a
// timer, a late answer) are expected, not faults: they implement
// actor.IgnoreDeadLetterLogging so protoactor neither logs them nor starts
// its dead-letter throttle goroutine for them.

func (*procStarted) IgnoreDeadLetterLogging()       {}
func (*procExited) IgnoreDeadLetterLogging()        {}
func (*linkReady) IgnoreDeadLetterLogging()         {}
func (*memoryOver) IgnoreDeadLetterLogging()        {}
func (*workerLeaving) IgnoreDeadLetterLogging()     {}
func (*leavingTimeout) IgnoreDeadLetterLogging()    {}
func (*exitReportTimeout) IgnoreDeadLetterLogging() {}
func (*workerFailing) IgnoreDeadLetterLogging()     {}
func (*slotFreed) IgnoreDeadLetterLogging()         {}
func (*budgetSpent) IgnoreDeadLetterLogging()       {}
func (*recycleDue) IgnoreDeadLetterLogging()        {}
func (*linkClosed) IgnoreDeadLetterLogging()        {}
func (*handshakeTimeout) IgnoreDeadLetterLogging()  {}
func (*heartbeatTick) IgnoreDeadLetterLogging()     {}
func (*overrunCheck) IgnoreDeadLetterLogging()      {}
func (*overrunKill) IgnoreDeadLetterLogging()       {}
func (*stopWorker) IgnoreDeadLetterLogging()        {}
func (*workerReady) IgnoreDeadLetterLogging()       {}
func (*workerExited) IgnoreDeadLetterLogging()      {}
func (*cancelJob) IgnoreDeadLetterLogging()         {}
func (*routerTick) IgnoreDeadLetterLogging()        {}
func (*routerWake) IgnoreDeadLetterLogging()        {}
func (*shutdownRequest) IgnoreDeadLetterLogging()   {}

// IgnoreDeadLetterLogging implements actor.IgnoreDeadLetterLogging: a job
// sent to a router that has stopped is failed through the router's gate,
// so the dead letter needs no log line.
func (*Job) IgnoreDeadLetterLogging() {}

// IgnoreDeadLetterLogging implements actor.IgnoreDeadLetterLogging: the
// sender of a job may stop before its result arrives.
func (*Result) IgnoreDeadLetterLogging() {}
