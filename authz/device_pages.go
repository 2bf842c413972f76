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

func (p *pages) renderDevice(w http.ResponseWriter, status int, d devicePage) {
	d.Hidden = pageHidden(d.Hidden)
	d.ClientURI = pageHTTPSURL(d.ClientURI)
	d.LogoURI = pageHTTPSURL(d.LogoURI)
	p.render(w, status, pageDeviceFile, d)
}

func (p *pages) renderDeviceDone(w http.ResponseWriter, status int, d deviceDonePage) {
	p.render(w, status, pageDeviceDoneFile, d)
}
