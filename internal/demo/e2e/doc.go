// Package e2e holds the demo's end-to-end tests in a real browser: authz,
// the contacts API (internal/demo/api) and the BFF (internal/demo/bff) run
// in the test process, and headless Chromium, driven by
// authz/testdata/browser/demo.mjs, clicks through them. It has no code of
// its own outside its tests.
package e2e
