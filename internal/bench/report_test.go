package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	return &Report{
		Started: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), CPUs: 2, GoVersion: "go1.26", Platform: "linux/amd64",
		Database: "private cluster", PGVersion: "15.18", Duration: Seconds(7 * time.Second), Warmup: Seconds(875 * time.Millisecond),
		LoadBefore: 0.5, LoadAfter: 2.25,
		Pgbench: Pgbench{TPS: 40000.4, LatencyMS: 0.8, Clients: 32, Threads: 2, Seconds: 7, Scale: 10},
		Rows: []Row{
			newRow(opIntrospectActive, 8, measurement{
				JobResult: JobResult{Requests: 42010, Errors: 10, Elapsed: 7 * time.Second, P50: 1234 * time.Microsecond, P99: 19870 * time.Microsecond,
					ClientCPU: 4201 * time.Millisecond},
				Statements: 84020, ServerCPU: 6301500 * time.Microsecond, DBCPU: -1, RSS: 40 << 20,
			}, 40000),
			newRow(opRefreshLong, 32, measurement{
				JobResult:  JobResult{Requests: 3500, Elapsed: 3500 * time.Millisecond, P50: 52 * time.Millisecond, P99: 212400 * time.Microsecond},
				Statements: 38500, ServerCPU: 7 * time.Second, DBCPU: 3500 * time.Millisecond, RSS: 47 << 20,
			}, 40000),
		},
	}
}

// TestRow: the rates, per-request figures and fraction derive from the
// measurement as the table's notes say.
func TestRow(t *testing.T) {
	r := sampleReport().Rows[0]
	if r.Rate != 6000 { // successes only: (42010-10) / 7 s
		t.Errorf("rate %v, want 6000", r.Rate)
	}
	if r.SQLPerOp != 2 || r.ServerCPU != 150 || r.ClientCPU != 100 || r.DBCPU != -1 {
		t.Errorf("per request: SQL %v, server %v µs, client %v µs, db %v", r.SQLPerOp, r.ServerCPU, r.ClientCPU, r.DBCPU)
	}
	if r.OfPgbench != 0.15 || r.RSSMB != 40 {
		t.Errorf("fraction %v, RSS %v", r.OfPgbench, r.RSSMB)
	}
	if empty := newRow(opRevoke, 8, measurement{}, 0); empty.Rate != 0 || empty.SQLPerOp != 0 || empty.OfPgbench != 0 {
		t.Errorf("a run with no requests: %+v", empty)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `authz-bench 2026-12-03 10:00 UTC: 2 CPUs, linux/amd64, go1.26; PostgreSQL 15.18, private cluster
each run: 7s measured after a 875ms warm-up, closed loop, loopback HTTP/1.1 keep-alive; ID tokens RS256; load average 0.50 before, 2.25 after
pgbench -S -c 32 -j 2 -T 7 (scale 10): 40,000 tps, latency average 0.800 ms

operation                        conc  req/s  p50 ms  p99 ms  errors  SQL/op  CPU µs/req  pg µs/req  RSS MB  ×pgbench  note
introspect, active token            8  6,000    1.23    19.9      10    2.00         150          —      40     0.150
refresh, one long family/worker    32  1,000    52.0     212       0   11.00        2000       1000      47     0.025
`
	if got := b.String(); !strings.HasPrefix(got, want) {
		t.Errorf("table:\n%s\nwant it to start with:\n%s", got, want)
	}
	if !strings.Contains(b.String(), "×pgbench: req/s as a fraction of pgbench -S tps.") {
		t.Error("the notes under the table are missing")
	}
}

func TestWriteTableNotes(t *testing.T) {
	rep := sampleReport()
	rep.Rows[1].Note = "families grew to 120 tokens"
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  0.025  families grew to 120 tokens\n") {
		t.Errorf("the note is not the last column:\n%s", b.String())
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Duration float64 `json:"duration_s"`
		Pgbench  struct {
			TPS float64 `json:"tps"`
		} `json:"pgbench"`
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if got.Duration != 7 || got.Pgbench.TPS != 40000.4 || len(got.Rows) != 2 {
		t.Fatalf("report: %+v", got)
	}
	want := map[string]any{
		"op": "introspect-active", "concurrency": 8.0, "requests": 42010.0, "errors": 10.0, "elapsed_s": 7.0,
		"req_per_s": 6000.0, "p50_ms": 1.234, "p99_ms": 19.87, "sql_per_op": 2.0, "server_cpu_us_per_req": 150.0,
		"postgres_cpu_us_per_req": -1.0, "client_cpu_us_per_req": 100.0, "rss_mb": 40.0, "of_pgbench": 0.15,
	}
	for k, v := range want {
		if got.Rows[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got.Rows[0][k], v)
		}
	}
}

// TestMedianRows: several rounds make one row of each operation: medians
// of every figure, each round's fraction taken against its own pgbench
// -S with the least and greatest kept, counts summed, the note of the
// median round; an unknown CPU figure does not drag a median down.
func TestMedianRows(t *testing.T) {
	round := func(rate, of, serverCPU float64, p99 time.Duration, note string) []Row {
		return []Row{{Op: opIntrospectActive, Concurrency: 32, Requests: 100, Errors: 1, Elapsed: Seconds(time.Second),
			Rate: rate, P99: Millis(p99), SQLPerOp: 1, ServerCPU: serverCPU, DBCPU: -1, OfPgbench: of, Note: note}}
	}
	got := medianRows([][]Row{
		round(9000, 0.25, 120, 12*time.Millisecond, ""),
		round(6000, 0.20, -1, 20*time.Millisecond, "y"),
		round(7000, 0.22, 140, 15*time.Millisecond, "x"),
	})
	if len(got) != 1 {
		t.Fatalf("%d rows, want 1", len(got))
	}
	r := got[0]
	if r.Rate != 7000 || r.OfPgbench != 0.22 || r.OfPgbenchMin != 0.20 || r.OfPgbenchMax != 0.25 || r.P99 != Millis(15*time.Millisecond) {
		t.Errorf("medians: %+v", r)
	}
	if r.ServerCPU != 130 || r.DBCPU != -1 || r.SQLPerOp != 1 {
		t.Errorf("CPU medians: server %v (want 130, the unknown left out), db %v (want -1)", r.ServerCPU, r.DBCPU)
	}
	if r.Requests != 300 || r.Errors != 3 || r.Elapsed != Seconds(3*time.Second) || r.Note != "x" {
		t.Errorf("sums and notes: %+v", r)
	}
	if n := r.note(); n != "×pgbench 0.200–0.250; x" {
		t.Errorf("note column %q", n)
	}
	if one := medianRows([][]Row{round(1, 0.1, 1, time.Millisecond, "")}); one[0].note() != "" || one[0].Rate != 1 {
		t.Errorf("one round: %+v", one[0])
	}
	if medianRows(nil) != nil {
		t.Error("no rounds: want no rows")
	}
	p := medianPgbench([]Pgbench{{TPS: 40000}, {TPS: 30000}, {TPS: 35000}, {TPS: 45000}})
	if p.TPS != 35000 {
		t.Errorf("median pgbench %v, want the lower middle round, 35000", p.TPS)
	}
}

// TestWriteTableRounds: a report of several rounds says so above the
// table and gives every round's pgbench -S.
func TestWriteTableRounds(t *testing.T) {
	rep := sampleReport()
	rep.Rounds = 3
	rep.PgbenchRounds = []Pgbench{{TPS: 40000.4}, {TPS: 31000}, {TPS: 45000}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"3 rounds, each pgbench -S then every operation; figures are medians, each ×pgbench against its own round's\n",
		"(scale 10): 40,000 tps (rounds: 40,000, 31,000, 45,000), latency average 0.800 ms\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 999.5: "1,000", 12345: "12,345", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i))
	}
	if p50, p99 := percentile(d, 0.5), percentile(d, 0.99); p50 != 100 || p99 != 198 {
		t.Errorf("p50 %v, p99 %v; want 100 and 198", p50, p99)
	}
	if percentile(nil, 0.99) != 0 || percentile(d[:1], 0.99) != 1 {
		t.Error("percentile of one or no value")
	}
}

func TestParsePgbench(t *testing.T) {
	pg15 := `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
number of clients: 32
latency average = 0.790 ms
initial connection time = 12.345 ms
tps = 40512.123456 (without initial connection time)
`
	pg12 := `latency average = 0.900 ms
tps = 35000.5 (including connections establishing)
tps = 35555.5 (excluding connections establishing)
`
	for _, tt := range []struct {
		out          string
		tps, latency float64
	}{{pg15, 40512.123456, 0.79}, {pg12, 35555.5, 0.9}} {
		tps, lat, err := parsePgbench(tt.out)
		if err != nil || tps != tt.tps || lat != tt.latency {
			t.Errorf("parsed %v tps, %v ms, %v; want %v, %v", tps, lat, err, tt.tps, tt.latency)
		}
	}
	if _, _, err := parsePgbench("connection refused"); err == nil {
		t.Error("no tps: no error")
	}
}

func TestLookalikes(t *testing.T) {
	token := "abcDEF_-12.XYZ789"
	out := lookalikes(token, 50)
	seen := map[string]bool{}
	for _, s := range out {
		if len(s) != len(token) || strings.Index(s, ".") != strings.Index(token, ".") || s == token {
			t.Fatalf("%q is not shaped like %q", s, token)
		}
		seen[s] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct tokens of 50", len(seen))
	}
}

func TestLibpqURL(t *testing.T) {
	got := libpqURL("postgres://u:p@db:5432/x?pool_max_conns=8&sslmode=require&default_query_exec_mode=exec")
	if got != "postgres://u:p@db:5432/x?sslmode=require" {
		t.Errorf("libpqURL: %s", got)
	}
}
