package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
)

// apiError is an error a JSON endpoint (the admin API, client registration)
// answers with: {"error": Code, "error_description": Description}.
type apiError struct {
	Status      int
	Code        string
	Description string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Description }

func badRequest(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Description: fmt.Sprintf(format, args...)}
}

// writeJSON writes v as the JSON body of a response that must not be
// cached: it may carry a secret.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status, buf = http.StatusInternalServerError, *bytes.NewBufferString(`{"error":"server_error"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeAPIError answers with err: an *apiError or *InvalidMetadataError as
// it says, anything else as a 500 whose cause is logged, not shown.
func writeAPIError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apiError
	var me *InvalidMetadataError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &me):
		ae = &apiError{Status: http.StatusBadRequest, Code: me.Code, Description: me.Message}
	default:
		log.Error("request failed", "path", r.URL.Path, "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Code: "server_error", Description: "The server hit an unexpected problem."}
	}
	if ae.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeJSON(w, ae.Status, map[string]string{"error": ae.Code, "error_description": ae.Description})
}

// decodeJSONBody reads a JSON object from r's body into v, strictly: the
// Content-Type must be application/json, unknown fields and trailing data
// are refused, and the body is at most limit bytes. Errors are *apiError
// with code invalid_request, or fieldCode for an unknown field or a value
// of the wrong type (invalid_client_metadata for client metadata).
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any, limit int64, fieldCode string) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: "invalid_request", Description: "the request body must be JSON, sent with Content-Type: application/json"}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonDecodeError(err, fieldCode)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonDecodeError(err, fieldCode)
		}
		return badRequest("the request body has data after the JSON object")
	}
	return nil
}

// jsonDecodeError says in plain words what is wrong with a JSON body.
func jsonDecodeError(err error, fieldCode string) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		mbe    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("the request body is empty; a JSON object is required")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the request body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("the request body must be a JSON object, not %s", typ.Value)
		}
		return &apiError{Status: http.StatusBadRequest, Code: fieldCode, Description: fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonTypeName(typ.Type.String()), typ.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &apiError{Status: http.StatusBadRequest, Code: fieldCode, Description: "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")}
	}
	return badRequest("the request body could not be read: %v", err)
}

// jsonTypeName turns a Go type into the JSON a client should have sent.
func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool" || goType == "*bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "*int"):
		return "an integer"
	case goType == "[]string":
		return "an array of strings"
	case goType == "*string":
		return "a string"
	}
	return "of type " + goType
}
