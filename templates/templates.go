// Package templates embeds the user-facing HTML pages (login, consent,
// error, logout) and their static files, so the binary is self-contained.
// Operators who re-brand copy this directory and point AUTHZ_TEMPLATES_DIR
// at their copy; the embedded files are then not used.
package templates

import "embed"

// FS holds the page templates (*.html) and the static files (static/*).
//
//go:embed *.html static/*
var FS embed.FS
