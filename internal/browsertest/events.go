package browsertest

import (
	"encoding/json"
	"testing"
)

// Event is one console message, CSP violation, uncaught exception, request
// or document load, as harness.mjs records it; URLs come without their
// query strings. Scenario is set by scripts that tag their events.
type Event struct {
	Scenario  string `json:"scenario,omitempty"`
	Page      string `json:"page,omitempty"`
	Text      string `json:"text,omitempty"`
	Source    string `json:"source,omitempty"`
	Directive string `json:"directive,omitempty"`
	Blocked   string `json:"blocked,omitempty"`
	Method    string `json:"method,omitempty"`
	URL       string `json:"url,omitempty"`
	Status    int    `json:"status,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (e Event) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// Events are the lists of harness.mjs's newEvents, which its instrument
// fills. A script's result embeds them.
type Events struct {
	ConsoleErrors   []Event `json:"consoleErrors"`
	ConsoleWarnings []Event `json:"consoleWarnings"`
	CSPViolations   []Event `json:"cspViolations"`
	PageErrors      []Event `json:"pageErrors"`
	HTTPErrors      []Event `json:"httpErrors"`
	FailedRequests  []Event `json:"failedRequests"`
	Fetches         []Event `json:"fetches"` // fetch and XHR calls
}

// Check fails the test for every CSP violation, console error, uncaught
// exception, HTTP error and failed request, but those expected (which may
// be nil) reports true for: it logs those, and the console warnings.
func (ev *Events) Check(t testing.TB, expected func(Event) bool) {
	t.Helper()
	for _, c := range []struct {
		what   string
		events []Event
	}{
		{"CSP violation", ev.CSPViolations},
		{"console error", ev.ConsoleErrors},
		{"uncaught exception", ev.PageErrors},
		{"HTTP error", ev.HTTPErrors},
		{"failed request", ev.FailedRequests},
	} {
		for _, e := range c.events {
			if expected != nil && expected(e) {
				t.Logf("expected %s: %v", c.what, e)
			} else {
				t.Errorf("%s: %v", c.what, e)
			}
		}
	}
	for _, e := range ev.ConsoleWarnings {
		t.Logf("console warning: %v", e)
	}
}
