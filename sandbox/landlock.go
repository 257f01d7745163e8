package sandbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// landlockConfig is what a Landlock sandbox restricts: every file system
// right and both IPC scopes this kernel knows (go-landlock drops what an
// older kernel lacks), and no network rights (Namespaces.Network is for
// that).
func landlockConfig() landlock.Config {
	return landlock.Config{
		HandledAccessFS: landlock.V11.HandledAccessFS,
		Scoped:          landlock.V11.Scoped,
	}.BestEffort()
}

// LandlockABI returns the Landlock ABI version of the running kernel, 0
// if it has none (or it is disabled).
func LandlockABI() int {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// Ruleset creates a Landlock ruleset for l and returns its descriptor
// (close-on-exec; the caller closes it) and the flags for
// landlock_restrict_self, which the process to restrict calls once it has
// set no_new_privs. A path that does not exist is an error.
func (l *Landlock) Ruleset() (fd int, flags uint32, err error) { return l.RulesetAt("") }

// check reports what Ruleset would refuse, without making a ruleset:
// Landlock missing from the kernel, a path that does not exist.
func (l *Landlock) check() error {
	if LandlockABI() == 0 {
		return errNoLandlock
	}
	for _, list := range []struct {
		what  string
		paths []string
	}{{"ReadOnly", l.ReadOnly}, {"ReadWrite", l.ReadWrite}} {
		for _, p := range list.paths {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("sandbox: Landlock.%s: %w", list.what, err)
			}
		}
	}
	return nil
}

var errNoLandlock = fmt.Errorf("%w: Landlock: the kernel has no Landlock (Linux 5.13 with CONFIG_SECURITY_LANDLOCK, and landlock in the lsm= boot list)", ErrUnsupported)

// RulesetAt is Ruleset with every path looked up under root, a directory
// that shows another mount namespace (such as /proc/<pid>/root): the
// rules then name the files the worker will see there, a /proc of its
// own included. The programs (absolute paths) may also be read and
// executed: the worker's own program, say, if it is executed after the
// ruleset takes effect.
func (l *Landlock) RulesetAt(root string, programs ...string) (fd int, flags uint32, err error) {
	if LandlockABI() == 0 {
		return -1, 0, errNoLandlock
	}
	// Directory rights on a file are refused: split each list.
	split := func(what string, paths []string) (dirs, files []string, err error) {
		for _, p := range paths {
			fi, err := os.Stat(root + p)
			if err != nil {
				return nil, nil, fmt.Errorf("sandbox: Landlock.%s: %w", what, err)
			}
			if fi.IsDir() {
				dirs = append(dirs, root+p)
			} else {
				files = append(files, root+p)
			}
		}
		return dirs, files, nil
	}
	var rules []landlock.Rule
	roDirs, roFiles, err := split("ReadOnly", append(append([]string(nil), l.ReadOnly...), programs...))
	if err != nil {
		return -1, 0, err
	}
	rwDirs, rwFiles, err := split("ReadWrite", l.ReadWrite)
	if err != nil {
		return -1, 0, err
	}
	if len(roDirs) > 0 {
		rules = append(rules, landlock.RODirs(roDirs...))
	}
	if len(roFiles) > 0 {
		rules = append(rules, landlock.ROFiles(roFiles...))
	}
	if len(rwDirs) > 0 {
		rules = append(rules, landlock.RWDirs(rwDirs...).WithRefer())
	}
	if len(rwFiles) > 0 {
		rules = append(rules, landlock.RWFiles(rwFiles...))
	}
	fd, flags, err = landlockConfig().NewRulesetFD(rules...)
	if err != nil {
		return -1, 0, fmt.Errorf("sandbox: Landlock: %w", err)
	}
	if fd < 0 {
		return -1, 0, errors.New("sandbox: Landlock: nothing to restrict on this kernel")
	}
	return fd, flags, nil
}
