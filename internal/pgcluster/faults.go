package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Faults a test can inflict on its own cluster while requests run: stop it
// and bring it back at the same address, or freeze it. Only the cluster's
// own processes are signalled, by their process group, which the server
// leads (account.command sets Setpgid).

// Halt shuts the server down (fast shutdown: clients are disconnected) but
// keeps its data and socket directory, so Restart brings it back at the
// same URL.
func (c *Cluster) Halt() error {
	if c.cmd == nil {
		return errors.New("halt: the server is not running")
	}
	return c.shutdown()
}

// Restart starts the server again after Halt, with the same arguments and
// account, and returns once it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error {
	old := c.cmd
	if old == nil {
		return errors.New("restart: the server was never started")
	}
	select {
	case <-c.exited:
	default:
		return errors.New("restart: the server is still running; Halt it first")
	}
	log, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("restart: open server log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(old.Path)
	cmd.Args, cmd.Dir, cmd.Env, cmd.SysProcAttr = old.Args, old.Dir, old.Env, old.SysProcAttr
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	go func() {
		c.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := c.waitReady(ctx); err != nil {
		return errors.Join(err, c.logTail())
	}
	return nil
}

// Freeze stops every process of the server (SIGSTOP): connections stay
// open and new ones are accepted by the kernel, but nothing answers, as
// with a database host that stalls. Thaw resumes them.
//
// Signalling the server's process group is not enough: each child of the
// postmaster (every backend) makes itself a group and session leader
// (setsid in InitPostmasterChild). So the postmaster is stopped first, and
// once it is stopped, so that it forks nobody new, each of its children.
func (c *Cluster) Freeze() error {
	pid, err := c.serverPID()
	if err != nil {
		return err
	}
	if err := signalTree(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	if err := waitStopped(pid); err != nil {
		return err
	}
	return signalChildren(pid, syscall.SIGSTOP)
}

// Thaw resumes a frozen server (SIGCONT): its children first, then the
// postmaster.
func (c *Cluster) Thaw() error {
	pid, err := c.serverPID()
	if err != nil {
		return err
	}
	return errors.Join(signalChildren(pid, syscall.SIGCONT), signalTree(pid, syscall.SIGCONT))
}

func (c *Cluster) serverPID() (int, error) {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0, errors.New("the server is not running")
	}
	select {
	case <-c.exited:
		return 0, errors.New("the server has exited")
	default:
	}
	return c.cmd.Process.Pid, nil
}

// signalTree signals pid and its process group (what it may have spawned
// without a group of its own). A process that is gone already is no error.
func signalTree(pid int, sig syscall.Signal) error {
	errGroup := syscall.Kill(-pid, sig)
	errPID := syscall.Kill(pid, sig)
	if errPID != nil && !errors.Is(errPID, syscall.ESRCH) {
		return fmt.Errorf("signal the server's process %d (%v): %w", pid, sig, errPID)
	}
	if errGroup != nil && !errors.Is(errGroup, syscall.ESRCH) {
		return fmt.Errorf("signal the server's process group %d (%v): %w", pid, sig, errGroup)
	}
	return nil
}

func signalChildren(pid int, sig syscall.Signal) error {
	kids, err := children(pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range kids {
		errs = append(errs, signalTree(k, sig))
	}
	return errors.Join(errs...)
}

// waitStopped polls until pid is in the stopped state, so that a fork it
// had under way has completed and shows among its children.
func waitStopped(pid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		state, _, err := procStat(pid)
		if err != nil {
			return err
		}
		if state == 'T' || state == 't' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server's process %d did not stop (state %c)", pid, state)
		}
		runtime.Gosched()
	}
}

// children lists the processes whose parent is pid, from /proc (Linux).
func children(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list the server's processes: %w", err)
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(p); err == nil && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// procStat reads a process's state and parent from /proc/PID/stat:
// "PID (COMM) STATE PPID ...", where COMM may hold spaces and parentheses.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read the state of process %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("process %d: unexpected /proc stat %q", pid, b)
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: unexpected /proc stat %q", pid, b)
	}
	return fields[0][0], ppid, nil
}

// HoldConnections stops the postmaster alone (SIGSTOP): running backends
// go on serving their sessions, but new connections and cancel requests
// wait until ReleaseConnections.
func (c *Cluster) HoldConnections() error {
	pid, err := c.serverPID()
	if err != nil {
		return err
	}
	return signalTree(pid, syscall.SIGSTOP)
}

// ReleaseConnections resumes a postmaster that HoldConnections stopped.
func (c *Cluster) ReleaseConnections() error {
	pid, err := c.serverPID()
	if err != nil {
		return err
	}
	return signalTree(pid, syscall.SIGCONT)
}
