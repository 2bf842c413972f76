package bench

// The load generator runs as a child process of the benchmark, so that
// the benchmark process's CPU time and memory are the server's alone.
//
// The protocol, one line each: the parent writes the Job as JSON; the
// child warms up and writes "warm"; the parent reads its counters and
// writes "go"; the child measures, writes "done" as soon as every worker
// has stopped, then the JobResult as JSON. Between "warm" and "go" no
// request is in flight, nor after "done", so the parent's counters cover
// exactly the measured requests.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
)

// driveArg, as the first argument, makes the command the load generator.
const driveArg = "internal-load-generator"

// driveChild is the child's side: it reads a Job from stdin and drives it.
func driveChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	var job Job
	if err := json.Unmarshal(line, &job); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	d, err := newDriver(job)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hooks := hooks{
		warm: func() error {
			if _, err := fmt.Fprintln(stdout, "warm"); err != nil {
				return err
			}
			if line, err := in.ReadString('\n'); line != "go\n" {
				return fmt.Errorf("waiting for go: read %q: %v", line, err)
			}
			// Once measuring, the end of stdin means the parent is gone.
			go func() {
				_, _ = io.Copy(io.Discard, in)
				cancel()
			}()
			return nil
		},
		done: func() error {
			_, err := fmt.Fprintln(stdout, "done")
			return err
		},
	}
	res, err := d.run(ctx, hooks)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// measurement is one run as both sides saw it.
type measurement struct {
	JobResult
	Statements int64         // by the server's pool, while measuring
	ServerCPU  time.Duration // of this process, while measuring; -1: unknown
	DBCPU      time.Duration // of PostgreSQL's processes; -1: unknown
	RSS        int64         // this process's, the highest sample; 0: unknown
}

// generator starts load generator children and measures the server
// while they run.
type generator struct {
	self  string // this executable
	pool  *pgxpool.Pool
	pgPID int           // PostgreSQL's postmaster, 0 when not ours
	phase *atomic.Value // the profile label of the server's work
	log   func(string, ...any)
}

// drive runs job in a child and measures the server meanwhile; label
// names the work in the CPU profile.
func (g *generator) drive(ctx context.Context, job Job, label string) (m measurement, err error) {
	ctx, cancel := context.WithTimeout(ctx, job.Warmup+job.Duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.self, driveArg)
	cmd.SysProcAttr = childAttr()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return m, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return m, err
	}
	if err := cmd.Start(); err != nil {
		return m, fmt.Errorf("start the load generator: %w", err)
	}
	defer func() {
		_ = stdin.Close()
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("load generator: %w", werr)
		}
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w\n%s", err, strings.TrimSpace(stderr.String()))
		}
	}()
	g.phase.Store(label + "/warmup")
	out := bufio.NewReader(stdout)
	if err := json.NewEncoder(stdin).Encode(job); err != nil {
		return m, fmt.Errorf("send the job: %w", err)
	}
	if err := expect(out, "warm"); err != nil {
		return m, err
	}
	g.phase.Store(label)
	rss := sampleRSS()
	db0, dbOK := treeCPU(g.pgPID)
	st0 := storage.Statements(g.pool)
	cpu0 := processCPU()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return m, fmt.Errorf("start measuring: %w", err)
	}
	err = expect(out, "done")
	cpu1 := processCPU()
	st1 := storage.Statements(g.pool)
	db1, dbOK1 := treeCPU(g.pgPID)
	m.RSS = rss()
	g.phase.Store("idle")
	if err != nil {
		return m, err
	}
	if err := json.NewDecoder(out).Decode(&m.JobResult); err != nil {
		return m, fmt.Errorf("read the result: %w", err)
	}
	m.Statements, m.ServerCPU, m.DBCPU = st1-st0, cpu1-cpu0, db1-db0
	if runtime.GOOS != "linux" {
		m.ServerCPU = -1
	}
	if !dbOK || !dbOK1 || g.pgPID == 0 {
		m.DBCPU = -1
	}
	return m, nil
}

// expect reads one line from the child and checks it is want.
func expect(r *bufio.Reader, want string) error {
	line, err := r.ReadString('\n')
	if strings.TrimSpace(line) == want {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("unexpected %q", line)
	}
	return fmt.Errorf("load generator, waiting for %q: %w", want, err)
}

// sampleRSS samples this process's resident memory every 100 ms until the
// returned function is called, which returns the highest sample.
func sampleRSS() func() int64 {
	stop := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		peak := residentBytes()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				peak = max(peak, residentBytes())
			case <-stop:
				result <- max(peak, residentBytes())
				return
			}
		}
	}()
	return func() int64 {
		close(stop)
		return <-result
	}
}

// selfExecutable is the benchmark's own binary, which the children run.
func selfExecutable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the benchmark's own executable to run the load generator: %w", err)
	}
	return p, nil
}
