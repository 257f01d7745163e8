package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// peerScript is the Python program of the peer, written to a temporary
// file for each run.
//
//go:embed peer.py
var peerScript []byte

// peerWorkers is the size of the peer's executor, that of the pool it is
// compared with.
const peerWorkers = 2

// peerTest is one measurement asked of the peer.
type peerTest struct {
	Key  string `json:"key"`
	Size int    `json:"size"`
	Jobs int    `json:"jobs"`
	Kind string `json:"kind"`
	Hash bool   `json:"hash"`
	// Mode is "submit" (one submit per job, the default) or "map"
	// (Executor.map with chunksize Chunk).
	Mode  string `json:"mode,omitempty"`
	Chunk int    `json:"chunksize,omitempty"`
}

// peerResult is what the peer reports for one test.
type peerResult struct {
	Key     string  `json:"key"`
	Jobs    int     `json:"jobs"`
	Seconds float64 `json:"seconds"`
	Check   string  `json:"check"`
}

// peerKey names a peer measurement: workload and payload kind.
func peerKey(w *workload, kind string) string { return w.Key + "/" + kind }

// findPython returns the interpreter to run the peer with, or "" and a
// note saying why the peer is skipped.
func findPython(cfg config) (string, string) {
	if !cfg.Peer {
		return "", "skipped (-no-peer)"
	}
	p, err := exec.LookPath(cfg.Python)
	if err != nil {
		return "", fmt.Sprintf("skipped: %s not found", cfg.Python)
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("skipped: %s --version: %v", p, err)
	}
	return p, strings.TrimSpace(string(out))
}

// runPeer runs every workload and payload kind once through Python's
// ProcessPoolExecutor with peerWorkers processes, checks every result, and
// appends the samples to res.
func runPeer(ctx context.Context, e *env, python string, res *results) error {
	var tests []peerTest
	byKey := map[string]*workload{}
	for _, w := range e.workloads {
		for _, kind := range kinds {
			k := peerKey(w, kindName(kind))
			tests = append(tests, peerTest{Key: k, Size: w.Size, Jobs: e.jobsFor(w), Kind: kindName(kind), Hash: w.Hash})
			byKey[k] = w
		}
	}
	out, err := runPeerTests(ctx, python, tests)
	if err != nil {
		return err
	}
	for _, r := range out {
		w := byKey[r.Key]
		if w == nil {
			return fmt.Errorf("python peer: unknown test %q", r.Key)
		}
		if want := w.expectedCheck(r.Jobs); r.Check != want {
			return fmt.Errorf("python peer %s: wrong results (check %s, want %s)", r.Key, r.Check, want)
		}
		res.Peer[r.Key] = append(res.Peer[r.Key], r.sample())
	}
	return nil
}

// runPeerTests runs tests in one Python interpreter and returns one
// result per test; the caller checks them.
func runPeerTests(ctx context.Context, python string, tests []peerTest) ([]peerResult, error) {
	dir, err := os.MkdirTemp("", "procpool-bench-peer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "peer.py")
	if err := os.WriteFile(script, peerScript, 0o644); err != nil {
		return nil, err
	}
	in, err := json.Marshal(map[string]any{"workers": peerWorkers, "seeds": nSeeds, "tests": tests})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("python peer: %v\n%s", err, stderr.Bytes())
	}
	var out struct {
		Version string       `json:"version"`
		Results []peerResult `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("python peer: bad output: %v\n%s", err, stdout.Bytes())
	}
	if len(out.Results) != len(tests) {
		return nil, fmt.Errorf("python peer: %d results for %d tests", len(out.Results), len(tests))
	}
	return out.Results, nil
}

// sample is the result as a timed run.
func (r peerResult) sample() sample {
	return sample{N: r.Jobs, Elapsed: time.Duration(r.Seconds * float64(time.Second))}
}

// expectedCheck is the SHA-256 of the concatenated results of jobs
// 0..n-1, as the peer computes it.
func (w *workload) expectedCheck(n int) string {
	h := sha256.New()
	if w.Hash {
		for i := range n {
			d := w.digests[seed(i)]
			h.Write(d[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
