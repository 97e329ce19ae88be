// Package apierror is certgate's one error type for everything a client can
// see: an HTTP status, a stable machine-readable code, a sentence for humans,
// per-field details, and whether retrying can help. Internal errors are
// wrapped (with %w) until they reach the HTTP edge, where As classifies them
// exactly once.
package apierror

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Detail names one offending field (JSON-path-like: "sans[1]", "csr") and why.
type Detail struct {
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// Error is a classified error. Cause is never shown to clients; it is logged.
type Error struct {
	Status     int
	Code       string
	Message    string
	Details    []Detail
	Retryable  bool
	RetryAfter time.Duration
	Cause      error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// WithCause returns a copy of e carrying cause (for logs only).
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

// WithDetail returns a copy of e with one more detail.
func (e *Error) WithDetail(field, reason string) *Error {
	c := *e
	c.Details = append(append([]Detail(nil), e.Details...), Detail{Field: field, Reason: reason})
	return &c
}

// Stable error codes. Clients may switch on these; never rename one.
const (
	CodeValidation        = "validation_failed"
	CodeBadRequest        = "bad_request"
	CodeUnauthenticated   = "unauthenticated"
	CodeForbidden         = "forbidden"
	CodeNotFound          = "not_found"
	CodeConflict          = "conflict"
	CodeIdempotencyReuse  = "idempotency_key_reused"
	CodeTooLarge          = "request_too_large"
	CodeRateLimited       = "rate_limited"
	CodeUpstreamThrottled = "upstream_throttled"
	CodeUpstream          = "upstream_error"
	CodeUnavailable       = "unavailable"
	CodeCAUnavailable     = "ca_unavailable"
	CodeTimeout           = "timeout"
	CodeDatabase          = "database_unavailable"
	CodeInternal          = "internal_error"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeUnsupportedMedia  = "unsupported_media_type"
)

// New builds an Error.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Validation is the 400 for bad input, with the fields at fault.
func Validation(message string, details ...Detail) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeValidation, Message: message, Details: details}
}

// Field is shorthand for a one-detail validation error.
func Field(field, format string, args ...any) *Error {
	reason := fmt.Sprintf(format, args...)
	return Validation("invalid "+field+": "+reason, Detail{Field: field, Reason: reason})
}

func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, CodeNotFound, format, args...)
}

func Conflict(format string, args ...any) *Error {
	return New(http.StatusConflict, CodeConflict, format, args...)
}

func Forbidden(format string, args ...any) *Error {
	return New(http.StatusForbidden, CodeForbidden, format, args...)
}

func Unauthenticated(format string, args ...any) *Error {
	return New(http.StatusUnauthorized, CodeUnauthenticated, format, args...)
}

// Unavailable is a retryable 503.
func Unavailable(code string, retryAfter time.Duration, format string, args ...any) *Error {
	e := New(http.StatusServiceUnavailable, code, format, args...)
	e.Retryable = true
	e.RetryAfter = retryAfter
	return e
}

// Internal hides cause from the client; it is our own bug.
func Internal(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "internal error; the request ID identifies it in the server log", Cause: cause}
}

// As classifies any error: an *Error anywhere in the chain wins; a context
// deadline is a 504; a cancelled context is a 499-style client close (we use
// 408 so it stays a 4xx); anything else is an internal error.
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, errDeadline) {
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Message: "the request did not finish in time", Retryable: true, RetryAfter: time.Second, Cause: err}
	}
	return Internal(err)
}
