package sandbox

import (
	"errors"
	"fmt"

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

// RulesetAt is Ruleset with every path looked up under root, a directory
// that shows another mount namespace (such as /proc/<pid>/root): the
// rules then name the files the worker will see there, a /proc of its
// own included.
func (l *Landlock) RulesetAt(root string) (fd int, flags uint32, err error) {
	if LandlockABI() == 0 {
		return -1, 0, fmt.Errorf("%w: Landlock: the kernel has no Landlock (Linux 5.13 with CONFIG_SECURITY_LANDLOCK, and landlock in the lsm= boot list)", ErrUnsupported)
	}
	under := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = root + p
		}
		return out
	}
	var rules []landlock.Rule
	if len(l.ReadOnly) > 0 {
		rules = append(rules, landlock.RODirs(under(l.ReadOnly)...))
	}
	if len(l.ReadWrite) > 0 {
		rules = append(rules, landlock.RWDirs(under(l.ReadWrite)...).WithRefer())
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
