package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system, every thread) this process
// has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// residentBytes is this process's resident set size (VmRSS), or 0 when
// unknown.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest)) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// clockTick is the unit of /proc/*/stat times: USER_HZ, 100 on every
// Linux this runs on.
const clockTick = 10 * time.Millisecond

// treeCPU is the CPU time used by process pid, the children it has
// reaped (PostgreSQL's ended backends), and its live children (its
// backends and background workers). ok is false when pid cannot be read.
func treeCPU(pid int) (cpu time.Duration, ok bool) {
	f, err := procStat(pid)
	if err != nil {
		return 0, false
	}
	// utime, stime, cutime, cstime are fields 14-17; f starts at field 3.
	for _, i := range []int{11, 12, 13, 14} {
		cpu += ticks(f, i)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	parent := strconv.Itoa(pid)
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		cf, err := procStat(child)
		if err != nil || len(cf) < 13 || cf[1] != parent {
			continue
		}
		cpu += ticks(cf, 11) + ticks(cf, 12)
	}
	return cpu, true
}

// procStat returns the fields of /proc/pid/stat after the command name
// (which may hold spaces): state, ppid, ...
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, os.ErrInvalid
	}
	return strings.Fields(string(b[i+1:])), nil
}

func ticks(fields []string, i int) time.Duration {
	if i >= len(fields) {
		return 0
	}
	n, _ := strconv.ParseInt(fields[i], 10, 64)
	return time.Duration(n) * clockTick
}

// loadAverage is the machine's 1-minute load average, or -1.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// childAttr kills the load generator if the benchmark dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
