//go:build !linux

package bench

import (
	"syscall"
	"time"
)

// Elsewhere than Linux the benchmark runs, but reports no CPU or memory
// figures: they come from /proc and getrusage.

func processCPU() time.Duration { return 0 }

func residentBytes() int64 { return 0 }

func treeCPU(int) (time.Duration, bool) { return 0, false }

func loadAverage() float64 { return -1 }

func childAttr() *syscall.SysProcAttr { return nil }
