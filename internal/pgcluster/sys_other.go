//go:build !linux

package pgcluster

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func ramDir() string { return "" }
