package store

import (
	"time"

	"gorm.io/gorm"
)

// Certificate statuses.
const (
	StatusPending = "pending"
	StatusIssued  = "issued"
	StatusFailed  = "failed"
	StatusRevoked = "revoked"
)

// CertificateAuthority is the last known state of one CA role, so a restart
// while the backend is unreachable still serves chains (marked stale).
type CertificateAuthority struct {
	Name             string `gorm:"primaryKey;size:32"`
	Backend          string `gorm:"size:16;not null"`
	ARN              string `gorm:"size:256"`
	Status           string `gorm:"size:32"`
	UsageMode        string `gorm:"size:32"`
	KeyAlgorithm     string `gorm:"size:32"`
	SigningAlgorithm string `gorm:"size:32"`
	CertificatePEM   string `gorm:"type:text"`
	ChainPEM         string `gorm:"type:text"`
	NotBefore        time.Time
	NotAfter         time.Time
	FetchedAt        time.Time
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Certificate is one issuance, from the pending row written before the CA is
// asked to the issued, failed or revoked row after. Serial is null only while
// a PCA issuance is pending (PCA picks the serial).
type Certificate struct {
	// Each list filter has an index ending in id, so a keyset page
	// (WHERE filter AND id < cursor ORDER BY id DESC) is a range scan.
	ID         uint64  `gorm:"primaryKey;autoIncrement;index:idx_cert_profile_id,priority:2;index:idx_cert_cn_id,priority:2;index:idx_cert_requester_id,priority:2;index:idx_cert_status_id,priority:2;index:idx_cert_status_expiry,priority:3;index:idx_cert_expiry,priority:2"`
	Serial     *string `gorm:"size:64;uniqueIndex"`
	CA         string  `gorm:"size:32;not null"`
	Profile    string  `gorm:"size:32;not null;index:idx_cert_profile_id,priority:1"`
	CommonName string  `gorm:"size:255;index:idx_cert_cn_id,priority:1"`
	// SANs is the JSON array of names as returned by the API.
	SANs         []string `gorm:"column:sans;serializer:json;type:text"`
	Cluster      string   `gorm:"size:64"`
	KeyAlgorithm string   `gorm:"size:32"`
	Status       string   `gorm:"size:16;not null;index:idx_cert_status_id,priority:1;index:idx_cert_status_expiry,priority:1"`
	NotBefore    time.Time
	NotAfter     time.Time `gorm:"index:idx_cert_status_expiry,priority:2;index:idx_cert_expiry,priority:1"`
	PEM          string    `gorm:"type:text"`
	ARN          string    `gorm:"size:512"`
	Fingerprint  string    `gorm:"size:64"` // SHA-256 of the DER, hex
	Requester    string    `gorm:"size:128;not null;index:idx_cert_requester_id,priority:1"`
	// IdempotencyKey is unique per requester; NULLs do not collide.
	IdempotencyKey *string `gorm:"size:255;uniqueIndex:idx_cert_idem,priority:2"`
	IdemRequester  *string `gorm:"size:128;uniqueIndex:idx_cert_idem,priority:1"`
	RequestHash    string  `gorm:"size:64"`
	// CSR (DER) is kept for backends that sign asynchronously (PCA), so
	// reconciliation can repeat IssueCertificate with the same idempotency
	// token after a crash. It is public material.
	CSR              []byte
	IdempotencyToken string `gorm:"size:64"`
	RequestID        string `gorm:"size:64"`
	RevokedAt        *time.Time
	RevocationReason string `gorm:"size:32"`
	FailureReason    string `gorm:"type:text"`
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Event is an audit and history record. The (ca, time, id) index makes a
// CA's time-range query an index range scan whatever the table's size.
type Event struct {
	ID         uint64            `gorm:"primaryKey;autoIncrement;index:idx_event_ca_time,priority:3;index:idx_event_time,priority:2;index:idx_event_type_time,priority:3"`
	CA         string            `gorm:"size:32;not null;index:idx_event_ca_time,priority:1"`
	Type       string            `gorm:"size:32;not null;index:idx_event_type_time,priority:1"`
	Time       time.Time         `gorm:"not null;index:idx_event_ca_time,priority:2;index:idx_event_time,priority:1;index:idx_event_type_time,priority:2"`
	Serial     string            `gorm:"size:64;index"`
	Principal  string            `gorm:"size:128"`
	RequestID  string            `gorm:"size:64"`
	SourceAddr string            `gorm:"size:64"`
	Outcome    string            `gorm:"size:16"`
	Details    map[string]string `gorm:"serializer:json;type:text"`
}

// BeforeCreate stamps the event with the database's clock (gorm.Config.NowFunc,
// injected in tests) unless the caller already set one.
func (e *Event) BeforeCreate(tx *gorm.DB) error {
	if e.Time.IsZero() {
		e.Time = tx.NowFunc()
	}
	e.Time = e.Time.UTC()
	return nil
}

// Event types.
const (
	EventIssued      = "issued"
	EventFailed      = "failed"
	EventRefused     = "refused"
	EventRevoked     = "revoked"
	EventCARefreshed = "ca_refreshed"
	EventCAExpiring  = "ca_expiring"
	EventAdmin       = "admin"
)
