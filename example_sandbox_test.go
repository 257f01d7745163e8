package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/sandbox"
)

// A job type whose workers run as nobody, in namespaces of their own
// (no network at all), in a cgroup of 256 MiB, half a CPU and 64 tasks,
// under the default seccomp profile, and with read access to their own
// directory only. Spawn refuses it, saying which control and why, on a
// machine that cannot apply it (this needs root, or CAP_SYS_ADMIN with
// CAP_SETUID, and the memory, cpu and pids cgroup controllers); so this
// example has no checked output. docs/isolation.md describes each
// control.
func ExampleSandbox() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	worker := workerBinary() // a static Go program: it needs no library
	r, err := sys.Spawn(procpool.JobType{
		Name:       "sha512",
		Command:    worker,
		MaxWorkers: 2,
		Sandbox: procpool.Sandbox{
			Credential: &sandbox.Credential{UID: 65534, GID: 65534},
			Memory:     256 << 20, // an OOM kill is a supervisor.MemoryFailure
			CPU:        0.5,
			Pids:       64,
			Namespaces: sandbox.Namespaces{User: true, Network: true, PID: true, Mount: true, IPC: true, UTS: true},
			Seccomp:    &sandbox.Seccomp{}, // the default profile; implies NoNewPrivs
			Landlock:   &sandbox.Landlock{ReadOnly: []string{filepath.Dir(worker)}},
		},
	})
	switch {
	case errors.Is(err, sandbox.ErrUnsupported):
		fmt.Println("this machine cannot apply the sandbox:", err)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	sum, err := r.Call(context.Background(), procpool.Blob, []byte("hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%x...\n", sum[:8])
}
