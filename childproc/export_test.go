package childproc

// DisablePtraceForTest makes Start use the fallback (controls applied to
// the threads of the running child) and returns a func that restores it.
func DisablePtraceForTest() (restore func()) {
	old := disablePtrace.Swap(true)
	return func() { disablePtrace.Store(old) }
}

// ParseMemory is parseMemory, for table tests.
var ParseMemory = parseMemory

// ReadProcFile is readProcFile, for tests of its growing buffer.
var ReadProcFile = readProcFile
