package main

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// results are the samples of every run.
type results struct {
	Began, Ended time.Time
	Took         time.Duration
	Machine      machine
	Cfg          config
	Cores        int
	Workloads    []*workload
	Modes        []mode
	// Startup by level key, Throughput by throughputKey, Peer by peerKey:
	// one sample per run, in run order, so that index r of two series was
	// measured in the same run.
	Startup    map[string][]sample
	Throughput map[string][]sample
	Peer       map[string][]sample
	PeerNote   string // the interpreter's version, or why the peer was skipped
	// Piscina by peerKey, like Peer; SDKNotes say which SDK workers ran
	// (and their runtimes) or why not.
	Piscina  map[string][]sample
	SDKNotes []string
	// SandboxNote says why the sandboxed figures are missing ("" if not).
	SandboxNote string
	Scaling     *scalingResult
	// Map by mapKey: the Map experiment's modes (mapping.go), the
	// no-copy payload's (fill.go); Latency by latencyKey (latency.go).
	Map      map[string][]sample
	MapModes []mapMode
	Latency  map[string][]latencySample
}

func newResults(e *env, began time.Time) *results {
	return &results{
		Began:      began,
		Machine:    readMachine(),
		Cfg:        e.cfg,
		Cores:      e.cores,
		Workloads:  e.workloads,
		Modes:      append(modes(e.cores), sdkModes(e.sdks)...),
		Startup:    map[string][]sample{},
		Throughput: map[string][]sample{},
		Peer:       map[string][]sample{},
		Piscina:    map[string][]sample{},
		Map:        map[string][]sample{},
		Latency:    map[string][]latencySample{},
	}
}

// machine describes where the bench ran.
type machine struct {
	CPU        string
	Cores      int
	GOMAXPROCS int
	Go         string
	OS         string
	Kernel     string
	Memory     string
	// LoadStart and LoadEnd are /proc/loadavg's 1-minute load at the
	// start and the end of the run.
	LoadStart, LoadEnd string
}

func readMachine() machine {
	m := machine{
		CPU:        "unknown",
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go:         runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Memory = procField("/proc/meminfo", "MemTotal")
	m.LoadStart = loadAvg()
	return m
}

// loadAvg returns the 1-minute load average, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// procField returns the value of the first "key: value" line of a /proc
// file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// docsDir returns the docs directory of the procpool module, found by
// walking up from the working directory to its go.mod.
func docsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/procpool/procpool\n") {
			return filepath.Join(dir, "docs"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the procpool module's go.mod above the working directory; pass -docs")
		}
		dir = parent
	}
}
