package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is everything one benchmark run measured.
type Report struct {
	Started   time.Time `json:"started"`
	CPUs      int       `json:"cpus"`
	GoVersion string    `json:"go_version"`
	Platform  string    `json:"platform"`
	Database  string    `json:"database"`
	PGVersion string    `json:"postgresql_version"`
	Duration  Seconds   `json:"duration_s"` // measured, per run
	// IDTokenAlg signs the sign-in client's ID tokens (exchange, refresh).
	IDTokenAlg string  `json:"id_token_alg"`
	Warmup     Seconds `json:"warmup_s"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// before and after the runs: well above the benchmark's own share,
	// something else was competing for the CPUs.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	// Pgbench is the round whose pgbench -S was the median (the lower of
	// the two middle ones for an even number of rounds).
	Pgbench Pgbench `json:"pgbench"`
	// Rounds is how many rounds the rows are medians of (--repeat), with
	// each round's pgbench -S when there were several.
	Rounds        int       `json:"rounds"`
	PgbenchRounds []Pgbench `json:"pgbench_rounds,omitempty"`
	Rows          []Row     `json:"rows"`
}

// Row is one operation at one concurrency.
type Row struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Elapsed     Seconds `json:"elapsed_s"`
	Rate        float64 `json:"req_per_s"` // successful requests per second
	P50         Millis  `json:"p50_ms"`
	P99         Millis  `json:"p99_ms"`
	SQLPerOp    float64 `json:"sql_per_op"`
	// CPU per request in microseconds; -1 when unknown.
	ServerCPU float64 `json:"server_cpu_us_per_req"`
	DBCPU     float64 `json:"postgres_cpu_us_per_req"`
	ClientCPU float64 `json:"client_cpu_us_per_req"`
	RSSMB     float64 `json:"rss_mb"`
	// OfPgbench is Rate / pgbench -S tps. Over several rounds it is the
	// median of each round's own fraction, which runs between the least
	// and the greatest.
	OfPgbench    float64 `json:"of_pgbench"`
	OfPgbenchMin float64 `json:"of_pgbench_min,omitempty"`
	OfPgbenchMax float64 `json:"of_pgbench_max,omitempty"`
	Note         string  `json:"note,omitempty"`
}

// medianRows makes one row of each operation and concurrency out of the
// rounds' rows (each round runs the same rows in the same order; a round
// cut short contributes what it ran): the median of every figure, each
// round's fraction of its own pgbench -S included, and counts summed. The
// note is that of the round whose rate is the median (the lower middle
// one for an even count).
func medianRows(rounds [][]Row) []Row {
	switch len(rounds) {
	case 0:
		return nil
	case 1:
		return rounds[0]
	}
	var out []Row
	for i := range rounds[0] {
		var rs []Row
		for _, round := range rounds {
			if i < len(round) {
				rs = append(rs, round[i])
			}
		}
		med := func(f func(Row) float64) float64 {
			v := make([]float64, len(rs))
			for j, r := range rs {
				v[j] = f(r)
			}
			return median(v)
		}
		r := Row{Op: rs[0].Op, Concurrency: rs[0].Concurrency}
		for _, x := range rs {
			r.Requests += x.Requests
			r.Errors += x.Errors
			r.Elapsed += x.Elapsed
		}
		byRate := slices.SortedFunc(slices.Values(rs), func(a, b Row) int { return cmp.Compare(a.Rate, b.Rate) })
		r.Note = byRate[(len(byRate)-1)/2].Note
		r.Rate = med(func(x Row) float64 { return x.Rate })
		r.P50 = Millis(med(func(x Row) float64 { return float64(x.P50) }))
		r.P99 = Millis(med(func(x Row) float64 { return float64(x.P99) }))
		r.SQLPerOp = med(func(x Row) float64 { return x.SQLPerOp })
		r.ServerCPU = med(func(x Row) float64 { return x.ServerCPU })
		r.DBCPU = med(func(x Row) float64 { return x.DBCPU })
		r.ClientCPU = med(func(x Row) float64 { return x.ClientCPU })
		r.RSSMB = med(func(x Row) float64 { return x.RSSMB })
		r.OfPgbench = med(func(x Row) float64 { return x.OfPgbench })
		r.OfPgbenchMin, r.OfPgbenchMax = rs[0].OfPgbench, rs[0].OfPgbench
		for _, x := range rs {
			r.OfPgbenchMin, r.OfPgbenchMax = min(r.OfPgbenchMin, x.OfPgbench), max(r.OfPgbenchMax, x.OfPgbench)
		}
		out = append(out, r)
	}
	return out
}

// median of v (which it sorts); the mean of the two middle values for an
// even count. -1 (unknown) stays -1 only if every value is.
func median(v []float64) float64 {
	known := slices.DeleteFunc(v, func(f float64) bool { return f < 0 })
	if len(known) == 0 {
		return -1
	}
	slices.Sort(known)
	n := len(known)
	if n%2 == 1 {
		return known[n/2]
	}
	return (known[n/2-1] + known[n/2]) / 2
}

// medianPgbench is the round of median tps (the lower middle one for an
// even count), or the zero value without rounds.
func medianPgbench(ps []Pgbench) Pgbench {
	if len(ps) == 0 {
		return Pgbench{}
	}
	sorted := slices.SortedFunc(slices.Values(ps), func(a, b Pgbench) int { return cmp.Compare(a.TPS, b.TPS) })
	return sorted[(len(sorted)-1)/2]
}

// Seconds is a duration that reads as seconds in JSON.
type Seconds time.Duration

func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Seconds(), 'f', 3, 64)), nil
}

// Millis is a duration that reads as milliseconds in JSON.
type Millis time.Duration

func (m Millis) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(m)/float64(time.Millisecond), 'f', 3, 64)), nil
}

// newRow turns a measurement into a row of the report.
func newRow(op string, concurrency int, m measurement, pgbenchTPS float64) Row {
	r := Row{
		Op: op, Concurrency: concurrency, Requests: m.Requests, Errors: m.Errors,
		Elapsed: Seconds(m.Elapsed), P50: Millis(m.P50), P99: Millis(m.P99),
		ServerCPU: -1, DBCPU: -1, ClientCPU: -1,
		RSSMB: float64(m.RSS) / (1 << 20),
	}
	if m.Elapsed > 0 {
		r.Rate = float64(m.Requests-m.Errors) / m.Elapsed.Seconds()
	}
	if m.Requests > 0 {
		n := float64(m.Requests)
		r.SQLPerOp = float64(m.Statements) / n
		perReq := func(d time.Duration) float64 {
			if d < 0 {
				return -1
			}
			return float64(d) / float64(time.Microsecond) / n
		}
		r.ServerCPU, r.DBCPU, r.ClientCPU = perReq(m.ServerCPU), perReq(m.DBCPU), perReq(m.ClientCPU)
	}
	if pgbenchTPS > 0 {
		r.OfPgbench = r.Rate / pgbenchTPS
	}
	return r
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// tableHeader names the table's columns; the first and last are left
// aligned.
var tableHeader = []string{"operation", "conc", "req/s", "p50 ms", "p99 ms", "errors", "SQL/op",
	"CPU µs/req", "pg µs/req", "RSS MB", "×pgbench", "note"}

// WriteTable writes the report as a plain-text table with a few lines
// around it saying what was measured and how.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "authz-bench %s: %d CPUs, %s, %s; PostgreSQL %s, %s\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.CPUs, r.Platform, r.GoVersion, r.PGVersion, r.Database)
	fmt.Fprintf(&b, "each run: %s measured after a %s warm-up, closed loop, loopback HTTP/1.1 keep-alive; ID tokens %s; load average %.2f before, %.2f after\n",
		time.Duration(r.Duration), time.Duration(r.Warmup), cmp.Or(r.IDTokenAlg, "RS256"), r.LoadBefore, r.LoadAfter)
	p := r.Pgbench
	rounds := ""
	if len(r.PgbenchRounds) > 1 {
		tps := make([]string, len(r.PgbenchRounds))
		for i, q := range r.PgbenchRounds {
			tps[i] = thousands(q.TPS)
		}
		rounds = " (rounds: " + strings.Join(tps, ", ") + ")"
		fmt.Fprintf(&b, "%d rounds, each pgbench -S then every operation; figures are medians, each ×pgbench against its own round's\n", len(r.PgbenchRounds))
	}
	fmt.Fprintf(&b, "pgbench -S -c %d -j %d -T %d (scale %d): %s tps%s, latency average %.3f ms\n\n",
		p.Clients, p.Threads, p.Seconds, p.Scale, thousands(p.TPS), rounds, p.LatencyMS)
	rows := [][]string{tableHeader}
	for _, row := range r.Rows {
		rows = append(rows, row.cells())
	}
	writeAligned(&b, rows)
	b.WriteString(tableNotes)
	_, err := io.WriteString(w, b.String())
	return err
}

const tableNotes = `
req/s: successful requests per second. p50, p99: latency the client saw. errors: requests that failed.
SQL/op: statements the server's pool ran per request (a BEGIN with its settings counts one); below one
  where concurrent requests share statements (introspection, client_credentials).
CPU µs/req: CPU time of the benchmark process per request: the server alone, as the load generator
  runs in a child process; pg µs/req: CPU time of all PostgreSQL processes per request.
RSS MB: the server process's resident memory, highest sample during the run.
×pgbench: req/s as a fraction of pgbench -S tps.
`

func (r Row) cells() []string {
	title := opTitles[r.Op]
	if title == "" {
		title = r.Op
	}
	return []string{
		title, strconv.Itoa(r.Concurrency), thousands(r.Rate), ms(r.P50), ms(r.P99),
		strconv.FormatInt(r.Errors, 10), fixed(r.SQLPerOp, 2), micros(r.ServerCPU), micros(r.DBCPU),
		fixed(r.RSSMB, 0), fixed(r.OfPgbench, 3), r.note(),
	}
}

// note is the row's note, led by the range of its fraction of pgbench -S
// over several rounds.
func (r Row) note() string {
	if r.OfPgbenchMin == r.OfPgbenchMax {
		return r.Note
	}
	span := fmt.Sprintf("×pgbench %s–%s", fixed(r.OfPgbenchMin, 3), fixed(r.OfPgbenchMax, 3))
	if r.Note == "" {
		return span
	}
	return span + "; " + r.Note
}

// writeAligned writes rows as columns two spaces apart: the first and
// last left aligned, the others right aligned.
func writeAligned(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			case i == len(row)-1:
				line.WriteString("  " + c)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// thousands formats a rate as a whole number with thousands separators.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// ms formats a latency in milliseconds with three significant digits.
func ms(m Millis) string {
	v := float64(m) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fixed(v, 2)
	case v < 100:
		return fixed(v, 1)
	}
	return fixed(v, 0)
}

func micros(us float64) string {
	if us < 0 {
		return "—"
	}
	return fixed(us, 0)
}

func fixed(f float64, decimals int) string { return strconv.FormatFloat(f, 'f', decimals, 64) }
