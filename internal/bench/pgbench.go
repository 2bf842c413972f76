package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Pgbench is the ceiling every rate is compared with: pgbench -S, one
// primary-key SELECT per transaction, on the same PostgreSQL.
type Pgbench struct {
	TPS       float64 `json:"tps"`
	LatencyMS float64 `json:"latency_avg_ms"`
	Clients   int     `json:"clients"`
	Threads   int     `json:"threads"`
	Seconds   int     `json:"seconds"`
	Scale     int     `json:"scale"`
}

const (
	pgbenchClients = 32
	pgbenchThreads = 2
)

// initPgbench fills the pgbench database (pgbench -i).
func initPgbench(ctx context.Context, bin, conn string, scale int) error {
	_, err := runPgbench(ctx, bin, "-i", "-q", "-s", strconv.Itoa(scale), conn)
	return err
}

// measurePgbench runs pgbench -S for about d.
func measurePgbench(ctx context.Context, bin, conn string, d time.Duration, scale int) (Pgbench, error) {
	p := Pgbench{Clients: pgbenchClients, Threads: pgbenchThreads, Seconds: int(math.Ceil(d.Seconds())), Scale: scale}
	out, err := runPgbench(ctx, bin, "-S", "-c", strconv.Itoa(p.Clients), "-j", strconv.Itoa(p.Threads),
		"-T", strconv.Itoa(p.Seconds), conn)
	if err != nil {
		return p, err
	}
	if p.TPS, p.LatencyMS, err = parsePgbench(out); err != nil {
		return p, fmt.Errorf("pgbench -S: %w\n%s", err, out)
	}
	return p, nil
}

func runPgbench(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pgbench %s: %w\n%s", args[0], err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

var (
	// PostgreSQL 14 and later say "without initial connection time";
	// earlier ones print both, the second "excluding connections
	// establishing".
	tpsLine     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)
	anyTPSLine  = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyLine = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// parsePgbench reads the transactions per second and average latency
// from pgbench's report.
func parsePgbench(out string) (tps, latencyMS float64, err error) {
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		m = anyTPSLine.FindStringSubmatch(out)
	}
	if m == nil {
		return 0, 0, fmt.Errorf("no tps in pgbench's output")
	}
	if tps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return 0, 0, err
	}
	if l := latencyLine.FindStringSubmatch(out); l != nil {
		latencyMS, _ = strconv.ParseFloat(l[1], 64)
	}
	return tps, latencyMS, nil
}
