package issuance

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/store"
	"github.com/certgate/certgate/internal/validation"
)

// PCAIdempotencyWindow is how long PCA honours an IdempotencyToken.
const PCAIdempotencyWindow = 5 * time.Minute

// Fetcher is a backend that can fetch a certificate it accepted earlier.
type Fetcher interface {
	Fetch(ctx context.Context, caName, ref string) (*ca.SignResult, error)
}

// PendingLister is what reconciliation needs beyond Store.
type PendingLister interface {
	ListPending(ctx context.Context, olderThan time.Time, limit int) ([]store.Certificate, error)
}

// ReconcileStats counts what one pass did.
type ReconcileStats struct {
	Seen, Issued, Failed, Left int
}

// Reconcile finishes pending rows older than minAge: rows whose process died
// between asking the CA and recording the answer. With a PCA certificate ARN
// it fetches the certificate; without one it repeats IssueCertificate with
// the same idempotency token while PCA still honours it (so PCA returns the
// certificate it may already have issued instead of a second one); otherwise
// it marks the row failed with the reason. The local CA signs in process, so
// a pending local row was never handed out: it is marked failed.
func (s *Service) Reconcile(ctx context.Context, lister PendingLister, minAge time.Duration) (ReconcileStats, error) {
	var st ReconcileStats
	rows, err := lister.ListPending(ctx, s.Now().Add(-minAge), 500)
	if err != nil {
		return st, err
	}
	for i := range rows {
		row := &rows[i]
		st.Seen++
		switch outcome, err := s.reconcileOne(ctx, row); {
		case err != nil:
			st.Left++
			s.Log.Warn("reconcile: row left pending", zap.Uint64("row", row.ID), zap.Error(err))
		case outcome == store.StatusIssued:
			st.Issued++
		case outcome == store.StatusFailed:
			st.Failed++
		default:
			st.Left++
		}
	}
	return st, nil
}

func (s *Service) reconcileOne(ctx context.Context, row *store.Certificate) (string, error) {
	sys := Caller{Principal: row.Requester, RequestID: "reconcile"}
	fail := func(reason string) (string, error) {
		row.Status, row.FailureReason = store.StatusFailed, encodeFailure(apierror.Unavailable(apierror.CodeUpstream, 0, "%s", reason))
		ev := s.event(sys, store.EventFailed, row.CA, "", "failure", map[string]string{"profile": row.Profile, "reason": reason, "reconciled": "true"})
		if err := s.Store.Finish(ctx, row, ev); err != nil && !errors.Is(err, store.ErrConflict) {
			return "", err
		}
		return store.StatusFailed, nil
	}
	// The token the original request carried (derived, as there, from the
	// row), so a resubmission finds what PCA may already have issued and
	// the finished row records it.
	idem := ""
	if row.IdempotencyKey != nil {
		idem = *row.IdempotencyKey
	}
	row.IdempotencyToken = idempotencyToken(row.Requester, row.ID, idem, row.RequestHash)
	if s.Backend.Kind() == "local" {
		return fail("the server stopped before the certificate was recorded; it was never handed out")
	}
	var out *ca.SignResult
	var err error
	switch {
	case row.ARN != "":
		f, ok := s.Backend.(Fetcher)
		if !ok {
			return "", fmt.Errorf("backend %s cannot fetch by ARN", s.Backend.Kind())
		}
		out, err = f.Fetch(ctx, row.CA, row.ARN)
	case s.Now().Sub(row.CreatedAt) < PCAIdempotencyWindow-30*time.Second && len(row.CSR) > 0:
		out, err = s.resubmit(ctx, row)
	default:
		return fail("the CA was asked but its answer was lost, and the idempotency window has passed")
	}
	if err != nil {
		ae := apierror.As(err)
		if ae.Code == ca.CodePCARequestFailed || ae.Status == 400 {
			return fail("the CA refused the request: " + ae.Message)
		}
		return "", err
	}
	return store.StatusIssued, s.recordReconciled(ctx, row, out)
}

// resubmit repeats IssueCertificate with the original idempotency token.
func (s *Service) resubmit(ctx context.Context, row *store.Certificate) (*ca.SignResult, error) {
	prof := s.Profiles.Lookup(row.Profile)
	if prof == nil {
		return nil, fmt.Errorf("unknown profile %q", row.Profile)
	}
	csr, err := x509.ParseCertificateRequest(row.CSR)
	if err != nil {
		return nil, err
	}
	names := &validation.Names{CommonName: row.CommonName}
	if len(row.SANs) > 0 {
		if names, err = validation.ParseNames(row.CommonName, row.SANs, prof.AllowWildcard); err != nil {
			return nil, err
		}
	}
	req := &ca.SignRequest{Profile: prof, CA: row.CA, PublicKey: csr.PublicKey, CSR: row.CSR,
		Subject:  subjectFor(prof, row),
		DNSNames: names.DNS, IPs: names.IPs, URIs: names.URIs, Emails: names.Emails,
		NotBefore: row.NotBefore, NotAfter: row.NotAfter,
		IdempotencyToken: row.IdempotencyToken,
		OnSubmitted:      func(ctx context.Context, arn string) error { return s.Store.SetARN(ctx, row.ID, arn) },
	}
	return s.Backend.Sign(ctx, req)
}

func subjectFor(prof *ca.Profile, row *store.Certificate) pkix.Name {
	if prof.IsCA && row.Cluster != "" {
		return IntermediateSubject(row.Cluster)
	}
	return pkix.Name{CommonName: row.CommonName}
}

func (s *Service) recordReconciled(ctx context.Context, row *store.Certificate, out *ca.SignResult) error {
	leaf := out.Leaf
	serial := ca.FormatSerial(leaf.SerialNumber)
	fp := sha256.Sum256(leaf.Raw)
	row.Serial, row.Status = &serial, store.StatusIssued
	row.NotBefore, row.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	row.PEM = certPEM(leaf.Raw)
	row.ARN, row.Fingerprint = out.ARN, hex.EncodeToString(fp[:])
	row.KeyAlgorithm = validation.KeyAlgorithm(leaf.PublicKey)
	ev := s.event(Caller{Principal: row.Requester, RequestID: "reconcile"}, store.EventIssued, row.CA, serial, "success",
		map[string]string{"profile": row.Profile, "certificate_arn": out.ARN, "reconciled": "true"})
	err := s.Store.Finish(ctx, row, ev)
	if err == nil {
		s.Log.Info("reconcile: pending row issued", zap.Uint64("row", row.ID), zap.String("serial", serial))
	}
	return err
}

// RunReconciler reconciles at start and then every interval until ctx ends.
func (s *Service) RunReconciler(ctx context.Context, lister PendingLister, minAge, interval time.Duration) {
	pass := func() {
		st, err := s.Reconcile(ctx, lister, minAge)
		if err != nil {
			s.Log.Warn("reconcile pass", zap.Error(err))
		} else if st.Seen > 0 {
			s.Log.Info("reconcile pass", zap.Int("seen", st.Seen), zap.Int("issued", st.Issued), zap.Int("failed", st.Failed), zap.Int("left", st.Left))
		}
	}
	pass()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pass()
		}
	}
}
