package childproc

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// StartError reports a process that Start could not start. Its message
// names the program and the working directory once each, whatever layer
// failed:
//
//	childproc: start /no/such/bin (dir /tmp): no such file or directory
//	childproc: start /bin/x (dir /no/such/dir): the working directory: no such file or directory
//
// Err is the cause as the layer that failed returned it, so errors.Is
// and errors.As reach it: a missing program is an *fs.PathError (or an
// *exec.Error for a name not found in $PATH) matching fs.ErrNotExist; a
// missing Dir an *fs.PathError whose Path is Dir; a sandbox this host
// cannot apply an error matching sandbox.ErrUnsupported.
type StartError struct {
	// Path is the program, as Spec.Path gave it or as $PATH resolved it.
	Path string
	// Dir is Spec.Dir ("" for the host's working directory).
	Dir string
	// Err is why the start failed.
	Err error
}

// Error implements error. An *fs.PathError or *exec.Error cause that
// names Path or Dir is printed without the name, which the message
// already holds.
func (e *StartError) Error() string {
	var b strings.Builder
	b.WriteString("childproc: start ")
	b.WriteString(e.Path)
	if e.Dir != "" {
		b.WriteString(" (dir ")
		b.WriteString(e.Dir)
		b.WriteString(")")
	}
	b.WriteString(": ")
	switch err := e.Err.(type) {
	case *fs.PathError:
		switch err.Path {
		case e.Path:
			b.WriteString(err.Err.Error())
		case e.Dir:
			b.WriteString("the working directory: ")
			b.WriteString(err.Err.Error())
		default:
			b.WriteString(err.Error())
		}
	case *exec.Error:
		if err.Name == e.Path {
			b.WriteString(err.Err.Error())
		} else {
			b.WriteString(err.Error())
		}
	default:
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err.
func (e *StartError) Unwrap() error { return e.Err }

// trampolineExe is what the re-exec trampoline starts: the host binary.
const trampolineExe = "/proc/self/exe"

// newStartError returns the StartError of program path (as Start
// resolved it) in dir. An error that names the program by its absolute
// path is renamed to path; one that names the trampoline (/proc/self/exe)
// is kept as it is, since the worker's program is not what failed.
// An exec failure that a missing or unusable dir explains is blamed on
// dir: the kernel answers a failed chdir and a failed execve alike, so a
// failure is checked against dir (only on failure: a start pays nothing
// for it).
func newStartError(path, dir string, err error) *StartError {
	e := &StartError{Path: path, Dir: dir, Err: err}
	pe, ok := err.(*fs.PathError)
	if !ok {
		return e
	}
	execFailed := pe.Op == "fork/exec" && (pe.Path == path || pe.Path == trampolineExe)
	programMissing := pe.Op == "open" && pe.Path == filepath.Join(absDir(dir), path)
	if !execFailed && !programMissing {
		return e
	}
	if dir != "" && isOneOf(pe.Err, syscall.ENOENT, syscall.ENOTDIR, syscall.EACCES) {
		if derr := dirError(dir); derr != nil {
			e.Err = derr
			return e
		}
	}
	if programMissing && pe.Path != path {
		e.Err = &fs.PathError{Op: pe.Op, Path: path, Err: pe.Err}
	}
	return e
}

// dirError returns why dir cannot be a working directory, as an
// *fs.PathError naming dir, or nil if it can as far as this process sees.
func dirError(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok {
			return &fs.PathError{Op: "chdir", Path: dir, Err: pe.Err}
		}
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "chdir", Path: dir, Err: syscall.ENOTDIR}
	}
	return nil
}

// absDir is dir made absolute against the host's working directory ("":
// the host's).
func absDir(dir string) string {
	if filepath.IsAbs(dir) {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return dir
	}
	return filepath.Join(wd, dir)
}

func isOneOf(err error, errnos ...syscall.Errno) bool {
	for _, n := range errnos {
		if errors.Is(err, n) {
			return true
		}
	}
	return false
}
