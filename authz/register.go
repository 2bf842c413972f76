package authz

import "net/http"

// register serves POST /oauth2/register (RFC 7591). Stub: being written.
func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	writeAPIError(w, r, h.log, &apiError{Status: http.StatusNotImplemented, Code: "server_error", Description: "not implemented yet"})
}

// registration serves GET/PUT/DELETE /oauth2/register/{client_id}
// (RFC 7592). Stub: being written.
func (h *Handler) registration(w http.ResponseWriter, r *http.Request) {
	writeAPIError(w, r, h.log, &apiError{Status: http.StatusNotImplemented, Code: "server_error", Description: "not implemented yet"})
}
