package pgcluster

import "syscall"

// sysProcAttr asks the kernel to interrupt (fast-shutdown) the server if we
// die without calling Stop, e.g. when a test binary is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGINT}
}

// ramDir returns /dev/shm when it has room for a test cluster (Docker's
// default of 64MB has not), or "" for the usual temporary directory.
func ramDir() string {
	const room = 1 << 30
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Bavail*uint64(st.Bsize) < room {
		return ""
	}
	return "/dev/shm"
}
