package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is set at link time by "make build" (-X main.buildVersion),
// from git describe: build info carries no commit when the toolchain runs
// with -buildvcs=false.
var buildVersion string

// version is this binary's version: what make build recorded, else what
// the Go toolchain recorded: the module version of a tagged release, or
// the commit it was built from (with "-dirty" when the tree had changes).
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	if v != "" && v != "(devel)" && !strings.Contains(v, "+dirty") {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		if v != "" && v != "(devel)" {
			return v
		}
		return "devel (no version recorded at build)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "devel-" + rev + dirty
}
