package childproc

// DisablePtraceForTest makes Start use the re-exec trampoline instead of
// tracing the child, and returns a func that restores it.
func DisablePtraceForTest() (restore func()) {
	old := disablePtrace.Swap(true)
	return func() { disablePtrace.Store(old) }
}

// ParseMemory is parseMemory, for table tests.
var ParseMemory = parseMemory

// ReadProcFile is readProcFile, for tests of its growing buffer.
var ReadProcFile = readProcFile

// ForceContainmentForTest makes the workers without namespaces of their
// own use c, and returns a func that restores the host's choice.
func ForceContainmentForTest(c Containment) (restore func()) {
	probeHost()
	old := containment.forced.Swap(int32(c))
	return func() { containment.forced.Store(old) }
}

// NoPIDNamespacesForTest makes the host look unable to make PID
// namespaces, and returns a func that restores it.
func NoPIDNamespacesForTest() (restore func()) {
	h := probeHost()
	old := h.pidns
	h.pidns = false
	return func() { h.pidns = old }
}

// HostContainmentForTest returns the containment this host gives workers
// without namespaces of their own.
func HostContainmentForTest() Containment { return probeHost().chosen }
