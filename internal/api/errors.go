package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/certgate/certgate/internal/apierror"
)

// ErrorBody is the one shape of every non-2xx answer.
type ErrorBody struct {
	Error ErrorPayload `json:"error"`
}

// ErrorPayload is the inside of ErrorBody.
type ErrorPayload struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Details   []apierror.Detail `json:"details,omitempty"`
	RequestID string            `json:"request_id"`
	Retryable bool              `json:"retryable"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError classifies err once and writes the error body.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := apierror.As(err)
	info := reqInfo(r)
	if info != nil {
		info.err = ae
	}
	if ae.RetryAfter > 0 || ae.Status == http.StatusTooManyRequests || (ae.Retryable && ae.Status >= 500) {
		ra := ae.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		secs := int((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	id := ""
	if info != nil {
		id = info.id
	}
	writeJSON(w, ae.Status, ErrorBody{Error: ErrorPayload{
		Code: ae.Code, Message: ae.Message, Details: ae.Details, RequestID: id, Retryable: ae.Retryable,
	}})
}
