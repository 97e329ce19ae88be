package revocation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/store"
)

// CRL is one signed CRL.
type CRL struct {
	DER        []byte
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	stamp      string
}

type crlEntry = CRL

func (c *CRL) refreshAt() time.Time { return c.NextUpdate.Add(-CRLRefreshBefore) }

// ErrNoSigner is returned for a CA whose key is not held here.
var ErrNoSigner = errors.New("no local signing key for this CA")

// CRL returns caName's current CRL: the cached one while the CA's
// revocation stamp is unchanged and more than a third of its validity is
// left; otherwise the one another replica already published for the current
// stamp; otherwise a newly signed one with the next number.
func (s *Service) CRL(ctx context.Context, caName string) (*CRL, error) {
	st, ok := s.cas[caName]
	if !ok {
		return nil, fmt.Errorf("unknown CA %q", caName)
	}
	if _, _, ok := s.signer(caName); !ok {
		return nil, ErrNoSigner
	}
	cur := st.crl.Load()
	_, stamp, err := s.check(ctx, st, false)
	if err != nil {
		if cur != nil && s.now().Before(cur.NextUpdate) {
			s.o.Log.Warn("CRL freshness check failed; serving the last CRL", zap.String("ca", caName), zap.Error(err))
			return cur, nil
		}
		return nil, err
	}
	if cur != nil && cur.stamp == stamp && s.now().Before(cur.refreshAt()) {
		return cur, nil
	}
	st.crlMu.Lock()
	defer st.crlMu.Unlock()
	if c := st.crl.Load(); c != nil && c != cur && c.stamp == stamp && s.now().Before(c.refreshAt()) {
		return c, nil // regenerated while we waited
	}
	c, err := s.publishCRL(ctx, st)
	if err != nil {
		if cur != nil && s.now().Before(cur.NextUpdate) {
			s.o.Log.Warn("CRL regeneration failed; serving the last CRL", zap.String("ca", caName), zap.Error(err))
			return cur, nil
		}
		return nil, err
	}
	st.crl.Store(c)
	return c, nil
}

// publishCRL adopts the stored CRL when it was built from the current stamp
// and is fresh, else signs the next number and publishes it with a
// compare-and-swap; losing the race means adopting the winner's.
func (s *Service) publishCRL(ctx context.Context, st *caState) (*CRL, error) {
	_, stamp, err := s.check(ctx, st, true)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		prev, err := s.o.Store.GetCRLState(ctx, st.name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		now := s.now()
		if prev != nil && prev.Stamp == stamp && len(prev.DER) > 0 && now.Before(prev.NextUpdate.Add(-CRLRefreshBefore)) {
			return &CRL{DER: prev.DER, Number: prev.Number, ThisUpdate: prev.ThisUpdate, NextUpdate: prev.NextUpdate, stamp: stamp}, nil
		}
		var prevNum int64
		if prev != nil {
			prevNum = prev.Number
		}
		c, err := s.signCRL(ctx, st.name, prevNum+1, now)
		if err != nil {
			return nil, err
		}
		c.stamp = stamp
		err = s.o.Store.SaveCRLState(ctx, prevNum, &store.CRLState{CA: st.name, Number: c.Number, Stamp: stamp,
			ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, DER: c.DER})
		if errors.Is(err, store.ErrConflict) {
			continue // another replica published first; look again
		}
		if err != nil {
			return nil, err
		}
		s.crlSigned.WithLabelValues(st.name).Inc()
		s.o.Log.Info("CRL signed", zap.String("ca", st.name), zap.Int64("number", c.Number))
		return c, nil
	}
	return nil, fmt.Errorf("CRL for %s: too many concurrent publishers", st.name)
}

// signCRL builds the CRL of caName from the database.
func (s *Service) signCRL(ctx context.Context, caName string, number int64, now time.Time) (*CRL, error) {
	cert, key, ok := s.signer(caName)
	if !ok {
		return nil, ErrNoSigner
	}
	rows, err := s.o.Store.RevokedForCRL(ctx, caName, now)
	if err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(rows))
	for _, r := range rows {
		if r.Serial == nil {
			continue
		}
		sn, ok := new(big.Int).SetString(*r.Serial, 16)
		if !ok {
			s.o.Log.Error("revoked row with an unparsable serial left off the CRL", zap.String("ca", caName), zap.String("serial", *r.Serial))
			continue
		}
		at := r.UpdatedAt
		if r.RevokedAt != nil {
			at = *r.RevokedAt
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: at.UTC(), ReasonCode: ReasonCode(r.RevocationReason)})
	}
	now = now.UTC().Truncate(time.Second) // the DER keeps seconds only
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now,
		NextUpdate:                now.Add(CRLValidity),
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, cert, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CRL of %s: %w", caName, err)
	}
	return &CRL{DER: der, Number: number, ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate}, nil
}
