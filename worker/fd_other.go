//go:build !unix

package worker

import (
	"errors"
	"os"
)

var errBrokenPipe = errors.New("broken pipe")

func hostFiles() (in, out *os.File, err error) {
	return nil, nil, errors.New("worker: Serve needs a Unix system; use ServeConn")
}
