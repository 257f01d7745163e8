package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sweep removes the cgroups that hosts which died without cleaning up (a
// SIGKILL) left under this process's own cgroups, killing what is still in
// them: the processes that escaped their worker's end under ContainCgroup
// (package childproc) do not outlive the next host of the cgroup.
func (sup *cgroupSupport) sweep() {
	var dirs []string
	if sup.v2Path != "" {
		dirs = append(dirs, filepath.Join(sup.v2Mount, sup.v2Path))
	}
	for n, own := range sup.v1Own {
		if sup.v1[n] {
			dirs = append(dirs, filepath.Join(v1Root(sup.v1Subs[n]), own))
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			pid, ok := cgroupOwner(e.Name())
			if !ok || !e.IsDir() || processAlive(pid) {
				continue
			}
			stale := filepath.Join(dir, e.Name())
			for range 100 {
				if os.Remove(stale) == nil || !killMembers(stale) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// cgroupOwner returns the host pid in a cgroup name procpool-<pid>-<n>.
func cgroupOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "procpool-")
	if !ok {
		return 0, false
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil && n > 0
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killMembers kills what is in the cgroup at dir (cgroup.kill where there
// is one) and reports whether it had members.
func killMembers(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil || len(b) == 0 {
		return false
	}
	// A v1 cgroup its host froze to kill it: frozen, they cannot die.
	_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return true
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return true
}
