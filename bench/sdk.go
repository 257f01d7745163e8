package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/procpool/procpool"
)

// sdkWorker is a worker written with one of the other languages' SDKs:
// examples/python-worker or examples/node-worker, which serve the job types
// of the test worker's workloads (noop, sha512, sha512v).
type sdkWorker struct {
	Key, Name     string
	Command       string
	Args          []string
	Version, Note string // the runtime's version, or why it is skipped
}

// findSDKWorkers returns the SDK workers whose runtime is on this machine,
// and notes on those that are not.
func findSDKWorkers(root string) (found []*sdkWorker, notes []string) {
	if py := pythonWithMsgpack(); py != "" {
		found = append(found, &sdkWorker{Key: "py2", Name: "Python SDK worker", Command: py,
			Args: []string{filepath.Join(root, "examples", "python-worker", "worker.py")}, Version: version(py)})
	} else {
		notes = append(notes, "Python SDK worker skipped: no python3 with msgpack (apt-get install python3-msgpack)")
	}
	if node, ok := nodeWithSDK(root); ok {
		found = append(found, &sdkWorker{Key: "node2", Name: "Node.js SDK worker", Command: node,
			Args: []string{filepath.Join(root, "examples", "node-worker", "worker.js")}, Version: "Node.js " + version(node)})
	} else {
		notes = append(notes, "Node.js SDK worker and piscina skipped: "+node)
	}
	return found, notes
}

// sdkModes are the throughput modes of the SDK workers: a pool of 2, as the
// Go pool of 2 they sit beside.
func sdkModes(ws []*sdkWorker) []mode {
	var ms []mode
	for _, w := range ws {
		ms = append(ms, mode{Key: w.Key, Name: fmt.Sprintf("%s, pool of 2, %d in flight each, %d callers", w.Name, pipeline, 2*pipeline),
			Kind: pool, Workers: 2, InFlight: pipeline, Callers: 2 * pipeline, sdk: w})
	}
	return ms
}

// pythonWithMsgpack returns a Python 3.9+ that imports msgpack: $PROCPOOL_PYTHON,
// /usr/bin/python3 (Debian's python3-msgpack), the python3 on PATH; or "".
func pythonWithMsgpack() string {
	cands := []string{os.Getenv("PROCPOOL_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if p != "" && exec.Command(p, "-c", "import sys, msgpack; assert sys.version_info >= (3, 9)").Run() == nil {
			return p
		}
	}
	return ""
}

// nodeWithSDK returns node and true when node is on PATH and the Node SDK's
// dependencies (npm ci in sdk/node) are installed; or why not.
func nodeWithSDK(root string) (string, bool) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "no node on PATH", false
	}
	for _, dep := range []string{"@msgpack/msgpack", "piscina"} {
		if _, err := os.Stat(filepath.Join(root, "sdk", "node", "node_modules", dep)); err != nil {
			return "sdk/node lacks " + dep + " (run npm ci there, or make bench)", false
		}
	}
	return node, true
}

func version(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
}

// piscinaScript and piscinaTask are the piscina peer: Node's worker-thread
// pool running the same jobs, with 2 threads.
//
//go:embed piscina.js
var piscinaScript []byte

//go:embed piscina-task.js
var piscinaTask []byte

// piscinaThreads is the size of piscina's thread pool.
const piscinaThreads = 2

// runPiscina runs every workload and payload kind once through piscina with
// piscinaThreads threads, checks every result, and appends the samples to
// res.Piscina.
func runPiscina(ctx context.Context, e *env, node string, res *results) error {
	dir, err := os.MkdirTemp("", "procpool-bench-piscina-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script, task := filepath.Join(dir, "piscina.js"), filepath.Join(dir, "task.js")
	if err := os.WriteFile(script, piscinaScript, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(task, piscinaTask, 0o644); err != nil {
		return err
	}
	var tests []peerTest
	byKey := map[string]*workload{}
	for _, w := range e.workloads {
		for _, kind := range kinds {
			k := peerKey(w, kindName(kind))
			tests = append(tests, peerTest{Key: k, Size: w.Size, Jobs: e.jobsFor(w), Kind: kindName(kind), Hash: w.Hash})
			byKey[k] = w
		}
	}
	in, err := json.Marshal(map[string]any{"threads": piscinaThreads, "seeds": nSeeds, "task": task, "tests": tests})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(e.root, "sdk", "node", "node_modules"))
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("piscina peer: %v\n%s", err, stderr.Bytes())
	}
	var out struct {
		Results []peerResult `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return fmt.Errorf("piscina peer: bad output: %v\n%s", err, stdout.Bytes())
	}
	if len(out.Results) != len(tests) {
		return fmt.Errorf("piscina peer: %d results for %d tests", len(out.Results), len(tests))
	}
	for _, r := range out.Results {
		w := byKey[r.Key]
		if w == nil {
			return fmt.Errorf("piscina peer: unknown test %q", r.Key)
		}
		if want := w.expectedCheck(r.Jobs); r.Check != want {
			return fmt.Errorf("piscina peer %s: wrong results (check %s, want %s)", r.Key, r.Check, want)
		}
		res.Piscina[r.Key] = append(res.Piscina[r.Key], sample{N: r.Jobs, Elapsed: time.Duration(r.Seconds * float64(time.Second))})
	}
	return nil
}

// sdkTable is experiment 5b: the SDK workers beside the peers of their
// languages, in the same run.
func (rp *report) sdkTable() {
	t := &table{
		Title: "5b. Worker SDKs in other languages, beside their languages' pools",
		Intro: fmt.Sprintf("The Python and Node.js SDK workers (examples/python-worker, examples/node-worker) through procpool, "+
			"a pool of 2 with %d jobs in flight each, against Python's ProcessPoolExecutor(%d) (processes, as above) and "+
			"piscina with %d threads (a worker-thread pool inside one Node.js process, not processes: no isolation), in the same run. "+
			"Every result is checked.", pipeline, peerWorkers, piscinaThreads),
		Header: []string{"job", "Python SDK, pool of 2", "ProcessPoolExecutor(2)", "SDK / executor", "Node SDK, pool of 2", "piscina, 2 threads", "SDK / piscina", "Go SDK, pool of 2"},
	}
	for _, w := range rp.res.Workloads {
		for _, kind := range kinds {
			py, ex := rp.tput(w.Key, kind, "py2"), rp.peer(w.Key, kind)
			nd, pi := rp.tput(w.Key, kind, "node2"), rates(rp.res.Piscina[w.Key+"/"+kindName(kind)])
			t.Rows = append(t.Rows, []string{w.Name + " " + kindName(kind), med(py), med(ex), ratioOf(ratios(py, ex)),
				med(nd), med(pi), ratioOf(ratios(nd, pi)), med(rp.tput(w.Key, kind, "pool2"))})
		}
	}
	t.Notes = append(t.Notes, rp.res.SDKNotes...)
	t.Notes = append(t.Notes,
		"the SDK workers' rows are also in tables 2a–2c and 3 (CPU per job); piscina passes BLOB payloads by structured clone (a copy per task)",
		"Python: /usr/bin/python3 when it has msgpack (Debian's python3-msgpack), else $PROCPOOL_PYTHON or the python3 on PATH")
	rp.tables = append(rp.tables, t)
}

// judgeSDK decides the SDK workers' targets on this run's figures.
func (rp *report) judgeSDK() {
	py := target{Name: "1 KiB BLOB, Python SDK worker through procpool (pool of 2) vs Python ProcessPoolExecutor(2) submit", Want: "≥ 2x"}
	if a, b := rp.tput("1KiB", procpool.Blob, "py2"), rp.peer("1KiB", procpool.Blob); len(a) == 0 || len(b) == 0 {
		py.Got = "not measured: " + strings.Join(append(rp.res.SDKNotes, "Python peer "+rp.res.PeerNote), "; ")
	} else {
		r := summarize(ratios(a, b))
		rv := summarize(ratios(rp.tput("1KiB", procpool.Value, "py2"), rp.peer("1KiB", procpool.Value)))
		py.Got = fmt.Sprintf("%.2fx (%s vs %s jobs/s; VALUE %.2fx)", r.Median, med(a), med(b), rv.Median)
		py.Met = r.Median >= 2
	}
	nd := target{Name: "1 KiB BLOB, Node.js SDK worker through procpool (pool of 2) vs piscina with 2 threads", Want: "≥ 1x"}
	if a, b := rp.tput("1KiB", procpool.Blob, "node2"), rates(rp.res.Piscina["1KiB/BLOB"]); len(a) == 0 || len(b) == 0 {
		nd.Got = "not measured: " + strings.Join(rp.res.SDKNotes, "; ")
	} else {
		r := summarize(ratios(a, b))
		rv := summarize(ratios(rp.tput("1KiB", procpool.Value, "node2"), rates(rp.res.Piscina["1KiB/VALUE"])))
		nd.Got = fmt.Sprintf("%.2fx (%s vs %s jobs/s; VALUE %.2fx)", r.Median, med(a), med(b), rv.Median)
		nd.Met = r.Median >= 1
	}
	rp.targets = append(rp.targets, py, nd)
}

// runSDKOnly is `go run ./bench -sdk`: every run measures the SDK workers,
// the Go pool of 2 and the peers (ProcessPoolExecutor, piscina) on the
// chosen workloads, one after the other; then it prints table 5b and the
// SDK targets.
func runSDKOnly(ctx context.Context, e *env, res *results) error {
	res.Modes = slices.DeleteFunc(res.Modes, func(m mode) bool { return m.sdk == nil && m.Key != "pool2" })
	python, peerNote := findPython(e.cfg)
	res.PeerNote = peerNote
	e.progress("procpool bench (SDK workers only): %d run(s), %d jobs per run (%d for 1 MiB), %d cores\n",
		e.cfg.Runs, e.cfg.Jobs, e.cfg.JobsMiB, e.cores)
	for r := range e.cfg.Runs {
		e.progress("run %d/%d: throughput", r+1, e.cfg.Runs)
		if err := runThroughput(ctx, e, res); err != nil {
			return err
		}
		if err := runPythonPeer(ctx, e, python, res); err != nil {
			return err
		}
		if err := runPiscinaPeer(ctx, e, res); err != nil {
			return err
		}
		e.progress("\n")
	}
	res.Took = time.Since(res.Began)
	res.Machine.LoadEnd = loadAvg()
	rp := &report{res: res}
	rp.sdkTable()
	rp.judgeSDK()
	rp.print(e.cfg.Out)
	fmt.Fprintf(e.cfg.Out, "\nbench took %v\n", res.Took.Round(time.Second))
	return nil
}

// runPythonPeer measures Python's ProcessPoolExecutor once, when python is
// set.
func runPythonPeer(ctx context.Context, e *env, python string, res *results) error {
	if python == "" {
		return nil
	}
	e.progress(", python peer")
	return runPeer(ctx, e, python, res)
}

// runPiscinaPeer measures piscina once, beside the Node.js SDK worker, when
// that worker is here.
func runPiscinaPeer(ctx context.Context, e *env, res *results) error {
	for _, w := range e.sdks {
		if w.Key == "node2" {
			e.progress(", piscina")
			return runPiscina(ctx, e, w.Command, res)
		}
	}
	return nil
}
