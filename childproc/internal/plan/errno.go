package plan

import "syscall"

func errnoError(n int64) error { return syscall.Errno(n) }
