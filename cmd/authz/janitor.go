package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
)

// defaultJanitorBatch is how many rows one DELETE removes at most.
const defaultJanitorBatch = 1000

// janitor deletes expired rows once and prints how many per table.
func (c *cli) janitor(ctx context.Context, args []string) error {
	fs := newFlags("janitor")
	dbURL := dbFlag(fs)
	batch := fs.Int("batch", defaultJanitorBatch, "delete at most `n` rows per statement, so no statement holds locks for long")
	pos, err := c.parse(fs, "[flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("janitor: unexpected argument %q", pos[0])
	}
	if *batch < 1 {
		return usagef("janitor: --batch must be at least 1")
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	deleted, err := store.DeleteExpired(ctx, *batch)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tDELETED")
	var total int64
	for _, table := range slices.Sorted(maps.Keys(deleted)) {
		fmt.Fprintf(tw, "%s\t%d\n", table, deleted[table])
		total += deleted[table]
	}
	fmt.Fprintf(tw, "total\t%d\n", total)
	return tw.Flush()
}
