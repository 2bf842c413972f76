package bench

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, env map[string]string, args ...string) (Options, error) {
	t.Helper()
	return ParseArgs(args, func(k string) string { return env[k] }, io.Discard)
}

func TestParseArgsDefaults(t *testing.T) {
	o, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 7*time.Second || o.PgbenchScale != 10 || o.JSON || o.CPUProfile != "" || o.DatabaseURL != "" {
		t.Errorf("defaults: %+v", o)
	}
	if !slices.Equal(o.Concurrencies, []int{8, 32}) {
		t.Errorf("concurrencies %v, want 8,32", o.Concurrencies)
	}
	if !slices.Equal(o.Ops, allOps) {
		t.Errorf("ops %v, want all", o.Ops)
	}
	if o.Warmup() != 875*time.Millisecond {
		t.Errorf("warm-up %v, want an eighth of the run", o.Warmup())
	}
}

func TestParseArgs(t *testing.T) {
	env := map[string]string{"AUTHZ_DATABASE_URL": " postgres://u@db/x "}
	tests := []struct {
		name  string
		args  []string
		check func(Options) bool
	}{
		{"quick", []string{"--quick"}, func(o Options) bool {
			return o.Duration == time.Second && o.PgbenchScale == 1 && o.Warmup() == 250*time.Millisecond
		}},
		{"duration wins over quick", []string{"--quick", "--duration", "3s"}, func(o Options) bool {
			return o.Duration == 3*time.Second && o.PgbenchScale == 1
		}},
		{"long runs warm up a second at most", []string{"--duration", "1m"}, func(o Options) bool { return o.Warmup() == time.Second }},
		{"concurrency", []string{"--concurrency", "4, 16,4"}, func(o Options) bool { return slices.Equal(o.Concurrencies, []int{4, 16}) }},
		{"ops run in the benchmark's order", []string{"--ops", "revoke,exchange"}, func(o Options) bool {
			return slices.Equal(o.Ops, []string{opExchange, opRevoke})
		}},
		{"json and profile", []string{"--json", "--cpuprofile", "cpu.out"}, func(o Options) bool { return o.JSON && o.CPUProfile == "cpu.out" }},
		{"database from the environment", nil, func(o Options) bool { return o.DatabaseURL == "postgres://u@db/x" }},
		{"one round unless told", nil, func(o Options) bool { return o.Repeat == 1 }},
		{"repeat", []string{"--repeat", "3"}, func(o Options) bool { return o.Repeat == 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(t, env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("%v parsed as %+v", tt.args, o)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--ops", "introspect,revoke"}, nil, `unknown operation "introspect"`},
		{[]string{"--duration", "seven"}, nil, "is not a duration"},
		{[]string{"--duration", "10ms"}, nil, "between 100ms and 10m"},
		{[]string{"--concurrency", "8,0"}, nil, "between 1 and 1024"},
		{[]string{"--concurrency", "eight"}, nil, "between 1 and 1024"},
		{[]string{"extra"}, nil, "unexpected arguments: extra"},
		{[]string{"--repeat", "0"}, nil, "between 1 and 20"},
		{[]string{"--repeat", "21"}, nil, "between 1 and 20"},
		{[]string{"--no-fsync"}, map[string]string{"AUTHZ_DATABASE_URL": "postgres://u@db/x"}, "private cluster only"},
	}
	for _, tt := range tests {
		_, err := parse(t, tt.env, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want one saying %q", tt.args, err, tt.want)
		}
	}
	if _, err := parse(t, nil, "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
