package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// CRLState is the last CRL a CA published, shared by every replica: its
// number (which only grows, across regenerations, replicas and restarts), the
// revocation stamp it was built from, its validity and its DER. A replica
// that finds a fresh CRL here built from the current stamp serves it instead
// of signing its own, so all replicas hand out the same CRL.
type CRLState struct {
	CA         string `gorm:"primaryKey;size:32"`
	Number     int64  `gorm:"not null"`
	Stamp      string `gorm:"size:160;not null"`
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
	UpdatedAt  time.Time
}

// TableName keeps the table name stable whatever GORM's naming strategy.
func (CRLState) TableName() string { return "crl_states" }

// MigrateRevocation creates the CRL state table and an index that makes the
// per-CA revocation stamp and the CRL's list of entries index range scans
// over revoked rows only. It is idempotent and safe for replicas starting
// together.
func (s *Store) MigrateRevocation(ctx context.Context) error {
	if err := s.db.WithContext(ctx).AutoMigrate(&CRLState{}); err != nil {
		return fmt.Errorf("migrate crl_states: %w", err)
	}
	err := s.db.WithContext(ctx).Exec("CREATE INDEX IF NOT EXISTS idx_cert_ca_status_revoked ON certificates (ca, status, revoked_at)").Error
	if err != nil && !isUniqueViolation(err) && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("migrate revocation index: %w", err)
	}
	return nil
}

// RevocationStamp is a cheap fingerprint of a CA's revocations: the number of
// revoked certificates and the latest revocation time. Any revocation, by any
// replica, changes it; comparing it is how a replica learns its CRL and OCSP
// answers are out of date without reading the whole list.
func (s *Store) RevocationStamp(ctx context.Context, caName string) (string, error) {
	var row struct {
		N      int64
		Latest sql.NullString
	}
	err := s.db.WithContext(ctx).Model(&Certificate{}).Select("COUNT(*) AS n, MAX(revoked_at) AS latest").
		Where("ca = ? AND status = ?", caName, StatusRevoked).Scan(&row).Error
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d|%s", row.N, row.Latest.String), nil
}

// RevokedForCRL lists a CA's revoked certificates that have not expired by
// notAfterAfter (an expired certificate needs no CRL entry), oldest first.
func (s *Store) RevokedForCRL(ctx context.Context, caName string, notAfterAfter time.Time) ([]Certificate, error) {
	var out []Certificate
	err := s.db.WithContext(ctx).Select("id", "serial", "revoked_at", "revocation_reason", "not_after", "updated_at").
		Where("ca = ? AND status = ? AND not_after > ?", caName, StatusRevoked, notAfterAfter.UTC()).Order("id").Find(&out).Error
	return out, err
}

// CertStatus returns just what an OCSP answer needs about one serial of one
// CA: status, validity and revocation. ErrNotFound when the CA never issued it.
func (s *Store) CertStatus(ctx context.Context, caName, serial string) (*Certificate, error) {
	var c Certificate
	err := s.db.WithContext(ctx).Select("id", "serial", "ca", "status", "not_before", "not_after", "revoked_at", "revocation_reason", "updated_at").
		Where("serial = ? AND ca = ?", serial, caName).Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	return &c, err
}

// GetCRLState returns the CA's last published CRL, or ErrNotFound.
func (s *Store) GetCRLState(ctx context.Context, caName string) (*CRLState, error) {
	var st CRLState
	err := s.db.WithContext(ctx).Where("ca = ?", caName).Take(&st).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	return &st, err
}

// SaveCRLState publishes st as the CA's CRL if the stored number is still
// prevNumber (0: no CRL yet) — a compare-and-swap, so two replicas that sign
// at once cannot both publish the same number: the loser gets ErrConflict and
// adopts the winner's CRL.
func (s *Store) SaveCRLState(ctx context.Context, prevNumber int64, st *CRLState) error {
	if st.Number <= prevNumber {
		return fmt.Errorf("CRL number %d must exceed %d", st.Number, prevNumber)
	}
	db := s.db.WithContext(ctx)
	if prevNumber == 0 {
		err := db.Create(st).Error
		if isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	}
	res := db.Model(&CRLState{}).Where("ca = ? AND number = ?", st.CA, prevNumber).Updates(map[string]any{
		"number": st.Number, "stamp": st.Stamp, "this_update": st.ThisUpdate.UTC(), "next_update": st.NextUpdate.UTC(),
		"der": st.DER, "updated_at": db.NowFunc(),
	})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return ErrConflict
	}
	return nil
}
