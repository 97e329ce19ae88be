package issuance

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/store"
)

// replay answers a request whose Idempotency-Key this principal used before:
// the first outcome again for the same body, 422 for a different body, 409
// while the first is still in flight. (nil, nil) means the key is new.
func (s *Service) replay(ctx context.Context, c Caller, p *prepared) (*Result, error) {
	row, err := s.Store.GetByIdempotencyKey(ctx, c.Principal, c.IdempotencyKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err)
	}
	if row.RequestHash != p.reqHash {
		return nil, apierror.New(http.StatusUnprocessableEntity, apierror.CodeIdempotencyReuse,
			"Idempotency-Key %q was already used with a different request body", c.IdempotencyKey)
	}
	if row.CreatedAt.Before(s.Now().Add(-IdempotencyWindow)) {
		return nil, apierror.New(http.StatusUnprocessableEntity, apierror.CodeIdempotencyReuse,
			"Idempotency-Key %q expired (kept %s); use a new key", c.IdempotencyKey, IdempotencyWindow)
	}
	switch row.Status {
	case store.StatusPending:
		e := apierror.Conflict("a request with Idempotency-Key %q is still in progress; retry shortly", c.IdempotencyKey)
		e.Retryable, e.RetryAfter = true, time.Second
		return nil, e
	case store.StatusFailed:
		return nil, decodeFailure(row.FailureReason)
	}
	info, err := s.Backend.Describe(ctx, row.CA)
	if err != nil {
		return nil, err
	}
	chain, root := splitChain(info)
	res := s.result(row, &ca.SignResult{Chain: chain, Root: root})
	res.Replayed = true
	return res, nil
}

// IdempotencyWindow is how long an Idempotency-Key is remembered.
const IdempotencyWindow = 24 * time.Hour

// splitChain turns a CA's Info into a leaf's chain (issuer first, root
// excluded) and the root.
func splitChain(info *ca.Info) ([]*x509.Certificate, *x509.Certificate) {
	if len(info.Chain) == 0 {
		return nil, info.Certificate
	}
	all := append([]*x509.Certificate{info.Certificate}, info.Chain...)
	return all[:len(all)-1], all[len(all)-1]
}

type storedFailure struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// encodeFailure keeps what a client saw, so a replay returns the same error.
func encodeFailure(err error) string {
	ae := apierror.As(err)
	b, _ := json.Marshal(storedFailure{Status: ae.Status, Code: ae.Code, Message: ae.Message})
	return string(b)
}

func decodeFailure(s string) error {
	var f storedFailure
	if json.Unmarshal([]byte(s), &f) != nil || f.Status == 0 {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the original request failed: %s", s)
	}
	return &apierror.Error{Status: f.Status, Code: f.Code, Message: f.Message}
}
