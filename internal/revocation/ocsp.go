package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/store"
)

// OCSPAnswer is a DER OCSP response and what the HTTP layer needs for its
// caching headers. Status is "good", "revoked", "unknown" for signed
// answers, or the error status of an unsigned one.
type OCSPAnswer struct {
	DER        []byte
	Status     string
	ThisUpdate time.Time
	NextUpdate time.Time
	Cached     bool
}

type ocspKey struct {
	ca, serial string
	hash       crypto.Hash
}

type ocspEntry struct {
	ans       OCSPAnswer
	gen       uint64
	reuseTill time.Time
}

func errorAnswer(der []byte, status string) *OCSPAnswer {
	return &OCSPAnswer{DER: der, Status: status}
}

// OCSP answers one DER OCSP request for caName (a known local CA). It never
// fails: every problem becomes an OCSP error response.
func (s *Service) OCSP(ctx context.Context, caName string, reqDER []byte) *OCSPAnswer {
	ans := s.ocspAnswer(ctx, caName, reqDER)
	s.ocspAnswers.WithLabelValues(caName, ans.Status, map[bool]string{true: "true", false: "false"}[ans.Cached]).Inc()
	return ans
}

func (s *Service) ocspAnswer(ctx context.Context, caName string, reqDER []byte) *OCSPAnswer {
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil || req.SerialNumber == nil {
		return errorAnswer(ocsp.MalformedRequestErrorResponse, "malformed")
	}
	st, ok := s.cas[caName]
	cert, key, ok2 := s.signer(caName)
	if !ok || !ok2 || !IssuerMatches(req, cert) {
		return errorAnswer(ocsp.UnauthorizedErrorResponse, "unauthorized")
	}
	k := ocspKey{ca: caName, serial: req.SerialNumber.Text(16), hash: req.HashAlgorithm}
	gen, _, checkErr := s.check(ctx, st, false)
	now := s.now()
	s.ocspMu.RLock()
	e := s.ocsp[k]
	s.ocspMu.RUnlock()
	if e != nil && now.Before(e.reuseTill) && (e.gen == gen || checkErr != nil) {
		a := e.ans
		a.Cached = true
		return &a
	}
	if checkErr != nil {
		s.o.Log.Warn("OCSP: revocation state unavailable", zap.String("ca", caName), zap.Error(checkErr))
		return errorAnswer(ocsp.TryLaterErrorResponse, "try_later")
	}

	tmpl := ocsp.Response{SerialNumber: req.SerialNumber, IssuerHash: req.HashAlgorithm, Status: ocsp.Unknown}
	if req.SerialNumber.Sign() > 0 {
		row, err := s.o.Store.CertStatus(ctx, caName, ca.FormatSerial(req.SerialNumber))
		switch {
		case errors.Is(err, store.ErrNotFound):
			if s.isLocalCASerial(caName, req.SerialNumber) {
				tmpl.Status = ocsp.Good
			}
		case err != nil:
			s.o.Log.Warn("OCSP: status lookup failed", zap.String("ca", caName), zap.Error(err))
			return errorAnswer(ocsp.TryLaterErrorResponse, "try_later")
		case row.Status == store.StatusIssued:
			tmpl.Status = ocsp.Good
		case row.Status == store.StatusRevoked:
			tmpl.Status = ocsp.Revoked
			tmpl.RevokedAt = row.UpdatedAt
			if row.RevokedAt != nil {
				tmpl.RevokedAt = *row.RevokedAt
			}
			tmpl.RevokedAt = tmpl.RevokedAt.UTC().Truncate(time.Second)
			tmpl.RevocationReason = ReasonCode(row.RevocationReason)
		}
		// pending and failed rows were never issued: unknown.
	}
	this := now.UTC().Truncate(time.Second)
	tmpl.ThisUpdate, tmpl.NextUpdate = this, this.Add(OCSPValidity)
	der, err := ocsp.CreateResponse(cert, cert, tmpl, key)
	if err != nil {
		s.o.Log.Error("OCSP: signing failed", zap.String("ca", caName), zap.Error(err))
		return errorAnswer(ocsp.InternalErrorErrorResponse, "internal_error")
	}
	ans := OCSPAnswer{DER: der, Status: statusName(tmpl.Status), ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate}
	if tmpl.Status != ocsp.Unknown { // made-up serials must not fill the cache
		s.ocspMu.Lock()
		if len(s.ocsp) >= maxOCSPCache {
			s.ocsp = map[ocspKey]*ocspEntry{}
		}
		s.ocsp[k] = &ocspEntry{ans: ans, gen: gen, reuseTill: now.Add(OCSPReuse)}
		s.ocspMu.Unlock()
	}
	return &ans
}

func statusName(st int) string {
	switch st {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}

// isLocalCASerial: the root's OCSP also answers for the local intermediates
// it signed, which are not rows in the certificates table.
func (s *Service) isLocalCASerial(caName string, serial *big.Int) bool {
	if caName != ca.Root {
		return false
	}
	root, _, ok := s.signer(ca.Root)
	if !ok {
		return false
	}
	for _, n := range ca.Names {
		if n == ca.Root {
			continue
		}
		c, _, ok := s.signer(n)
		if ok && c.SerialNumber.Cmp(serial) == 0 && bytes.Equal(c.RawIssuer, root.RawSubject) {
			return true
		}
	}
	return false
}

// flushOCSP drops cached answers of caName (all of them when serial is "").
func (s *Service) flushOCSP(caName, serial string) {
	s.ocspMu.Lock()
	defer s.ocspMu.Unlock()
	for k := range s.ocsp {
		if k.ca == caName && (serial == "" || k.serial == serial) {
			delete(s.ocsp, k)
		}
	}
}

// IssuerMatches reports whether the request's CertID names issuer: the hash
// of its subject DN and of its public key, with the request's hash algorithm.
func IssuerMatches(req *ocsp.Request, issuer *x509.Certificate) bool {
	if issuer == nil || !req.HashAlgorithm.Available() {
		return false
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return false
	}
	h := req.HashAlgorithm.New()
	h.Write(issuer.RawSubject)
	nameHash := h.Sum(nil)
	h.Reset()
	h.Write(spki.PublicKey.RightAlign())
	keyHash := h.Sum(nil)
	return bytes.Equal(nameHash, req.IssuerNameHash) && bytes.Equal(keyHash, req.IssuerKeyHash)
}
