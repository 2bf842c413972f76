package authz

import (
	"fmt"
	"net/http"
)

// The device verification pages (device.go): device.html asks for the
// code, then shows what the device asks for; device_done.html tells the
// person to go back to their device.

// devicePage is the data of device.html.
type devicePage struct {
	Action    string
	CSRFToken string
	Hidden    []hiddenField
	// Step is "code" (enter the code) or "confirm" (check the code and
	// what the device asks for, then allow or deny).
	Step     string
	UserCode string // prefilled on the code step; shown to compare on the confirm step
	Error    string
	// The confirm step's: which app, for whom, asking for what.
	ClientName string
	ClientURI  string // linked only when https
	LogoURI    string // shown only when https
	Username   string
	Scopes     []scopeView
	// Consented: the person already allowed this (or the client skips
	// consent); the page only asks to confirm the code.
	Consented bool
}

// deviceDonePage is the data of device_done.html.
type deviceDonePage struct {
	Approved bool
}

// Template files of the device pages.
const (
	pageDeviceFile     = "device.html"
	pageDeviceDoneFile = "device_done.html"
)

// deviceText is the device pages' text, in pageText's style (strings.go),
// added to pageText at start-up.
var deviceText = map[string]string{
	"device.title":           "Connect a device",
	"device.heading":         "Connect a device",
	"device.lead":            "Enter the code shown on your device.",
	"device.code_label":      "Code",
	"device.continue":        "Continue",
	"device.confirm_heading": "%s on your device wants to access your account",
	"device.compare":         "Make sure this code matches the one shown on your device: %s",
	"device.compare_warning": "If it does not, or you did not start this, deny: someone may be trying to get into your account.",
	"device.confirm":         "Confirm",
	"device.cancel":          "Cancel",
	"device.done_approved":   "The device is connected. You can return to your device now.",
	"device.done_denied":     "The request was denied, and the device was not connected. You can return to your device.",
	"device.done_heading":    "Return to your device",
}

// deviceErrors are the code step's messages, shown as the page's Error
// like the login page's (by Go code, so not in pageText).
var deviceErrors = map[string]string{
	"missing":   "Enter the code shown on your device.",
	"invalid":   "That code is not valid or has expired. Check the code on your device and try again.",
	"used":      "That code was already used. Start again on your device to get a new code.",
	"throttled": "Too many wrong codes from your network. Wait %s, then try again.",
}

func deviceErrorText(key string, args ...any) string {
	return fmt.Sprintf(deviceErrors[key], args...)
}

func init() {
	for k, v := range deviceText {
		pageText[k] = v
	}
}

func (p *pages) renderDevice(w http.ResponseWriter, status int, d devicePage) {
	d.Hidden = pageHidden(d.Hidden)
	d.ClientURI = pageHTTPSURL(d.ClientURI)
	d.LogoURI = pageHTTPSURL(d.LogoURI)
	p.render(w, status, pageDeviceFile, d)
}

func (p *pages) renderDeviceDone(w http.ResponseWriter, status int, d deviceDonePage) {
	p.render(w, status, pageDeviceDoneFile, d)
}
