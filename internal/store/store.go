// Package store persists certificates, CA state and events through GORM, on
// SQLite (embedded default) or PostgreSQL.
package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// ErrNotFound is returned when a lookup matches nothing.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a uniqueness rule refuses a write.
var ErrConflict = errors.New("conflict")

// Store is safe for concurrent use.
type Store struct {
	closeOnce sync.Once
	closeErr  error
	db        *gorm.DB // reads (and, on PostgreSQL, everything else)
	wdb       *gorm.DB // the writer's connection
	w         *writer
	driver    string
}

// Options tune Open.
type Options struct {
	Driver       string // sqlite | postgres
	DSN          string // postgres DSN, or sqlite file path ("" = DataDir/certgate.db)
	DataDir      string
	MaxOpenConns int
	Now          func() time.Time // injected clock for timestamps
	// WriteLinger is how long a write batch waits for announced writes
	// (ExpectWrite); 0 turns the wait off (the server's default is 2 ms,
	// database.write_linger).
	WriteLinger time.Duration
}

// Open connects and migrates the schema.
func Open(ctx context.Context, o Options) (*Store, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	gcfg := &gorm.Config{
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return now().UTC() },
		PrepareStmt:            true,
		SkipDefaultTransaction: true,
	}
	var (
		db  *gorm.DB
		err error
	)
	switch o.Driver {
	case "", "sqlite":
		path := o.DSN
		if path == "" {
			if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
				return nil, fmt.Errorf("data dir: %w", err)
			}
			path = filepath.Join(o.DataDir, "certgate.db")
		}
		dsn := path
		if path != ":memory:" && !strings.Contains(path, "?") {
			// WAL lets readers run beside the writer; busy_timeout turns
			// writer contention into a short wait instead of SQLITE_BUSY.
			dsn = "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_txlock=immediate"
		}
		wdb, err := gorm.Open(sqlite.Open(dsn), gcfg)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		wsql, err := wdb.DB()
		if err != nil {
			return nil, err
		}
		// One writer at a time is all SQLite allows: writes go through one
		// connection (fed by the group-commit writer), reads through a small
		// pool beside it, which WAL lets run while the writer writes.
		wsql.SetMaxOpenConns(1)
		wsql.SetConnMaxLifetime(0)
		if path != ":memory:" {
			_ = os.Chmod(path, 0o600)
			if db, err = gorm.Open(sqlite.Open(dsn), gcfg); err != nil {
				return nil, fmt.Errorf("open sqlite: %w", err)
			}
			rsql, err := db.DB()
			if err != nil {
				return nil, err
			}
			rsql.SetMaxOpenConns(4)
			rsql.SetMaxIdleConns(4)
		} else {
			db = wdb
		}
		s := &Store{db: db, wdb: wdb, driver: "sqlite"}
		return s.start(ctx, o.WriteLinger)
	case "postgres":
		db, err = gorm.Open(postgres.Open(o.DSN), gcfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		n := o.MaxOpenConns
		if n <= 0 {
			n = 16
		}
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	default:
		return nil, fmt.Errorf("unknown database driver %q", o.Driver)
	}
	s := &Store{db: db, wdb: db, driver: o.Driver}
	return s.start(ctx, o.WriteLinger)
}

func (s *Store) start(ctx context.Context, linger time.Duration) (*Store, error) {
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.w = newWriter(s.wdb, linger, s.driver == "postgres")
	return s, nil
}

// ExpectWrite announces that the caller will write soon (it is signing), so
// a write batch committing meanwhile waits briefly to take that write along.
// The returned context carries the announcement to the write; call the
// returned func when done (it is safe to call more than once and after the
// write), so a request that fails before writing does not keep a batch
// waiting.
func (s *Store) ExpectWrite(ctx context.Context) (context.Context, func()) {
	return s.w.announce(ctx)
}

// Announced is how many announced writes are outstanding: zero whenever no
// request is between ExpectWrite and its write (or its done call).
func (s *Store) Announced() int64 { return s.w.coming.Load() }

// WriteStats is how many writes the group-commit writer has run, and in how
// many transactions: their ratio is how well commits are shared.
func (s *Store) WriteStats() (writes, transactions int64) {
	return s.w.writes.Load(), s.w.batches.Load()
}

func (s *Store) migrate(ctx context.Context) error {
	if err := s.wdb.WithContext(ctx).AutoMigrate(&CertificateAuthority{}, &Certificate{}, &Event{}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Driver names the database kind.
func (s *Store) Driver() string { return s.driver }

// DB exposes GORM for tests and benchmarks that bulk-load.
func (s *Store) DB() *gorm.DB { return s.db }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close stops the writer and closes the pools; later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	if s.w != nil {
		s.w.close()
	}
	var errs []error
	for _, g := range []*gorm.DB{s.wdb, s.db} {
		if sqlDB, err := g.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
		if s.wdb == s.db {
			break
		}
	}
	return errors.Join(errs...)
}

func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "duplicate key value")
}

// CreatePending commits the row before the CA is asked (write-before-sign).
func (s *Store) CreatePending(ctx context.Context, c *Certificate) error {
	c.Status = StatusPending
	err := s.w.do(ctx, func(tx *gorm.DB) error { return tx.Create(c).Error })
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// SetARN records the PCA certificate ARN the moment IssueCertificate returns,
// so a crash before GetCertificate still leaves a way to finish the row.
func (s *Store) SetARN(ctx context.Context, id uint64, arn string) error {
	return s.w.do(ctx, func(tx *gorm.DB) error {
		return tx.Model(&Certificate{}).Where("id = ?", id).Update("arn", arn).Error
	})
}

// Finish moves a pending row to issued or failed and writes its event in the
// same transaction, so a certificate and its audit record exist together.
func (s *Store) Finish(ctx context.Context, c *Certificate, ev *Event) error {
	return s.w.do(ctx, func(tx *gorm.DB) error {
		cols := map[string]any{
			"serial": c.Serial, "status": c.Status, "not_before": c.NotBefore, "not_after": c.NotAfter,
			"pem": c.PEM, "arn": c.ARN, "fingerprint": c.Fingerprint, "failure_reason": c.FailureReason,
			"key_algorithm": c.KeyAlgorithm, "updated_at": tx.NowFunc(),
		}
		if c.IdempotencyToken != "" {
			// Known only once the row has its ID; kept so an operator can
			// match the row to PCA's records of the request.
			cols["idempotency_token"] = c.IdempotencyToken
		}
		if c.Status == StatusFailed && c.IdempotencyKey == nil {
			// A failure that released its Idempotency-Key (see
			// issuance): the key is free for the client's retry.
			cols["idempotency_key"], cols["idem_requester"] = nil, nil
		}
		res := tx.Model(&Certificate{}).Where("id = ? AND status = ?", c.ID, StatusPending).Updates(cols)
		if res.Error != nil {
			if isUniqueViolation(res.Error) {
				return fmt.Errorf("%w: %v", ErrConflict, res.Error)
			}
			return res.Error
		}
		if res.RowsAffected != 1 {
			return fmt.Errorf("%w: certificate row %d is no longer pending", ErrConflict, c.ID)
		}
		if ev != nil {
			return tx.Create(ev).Error
		}
		return nil
	})
}

// InsertFinal writes a finished (issued or failed) row and its event in one
// transaction: the path of a CA that signs in this process. Final rows that
// meet in one write batch go in as one multi-row INSERT per table, so the
// batch pays one statement (one parse on SQLite, one round trip on
// PostgreSQL) per table instead of one per row.
func (s *Store) InsertFinal(ctx context.Context, c *Certificate, ev *Event) error {
	f := &finalWrite{c: c, ev: ev}
	err := s.w.doOp(ctx, &writeOp{fn: func(tx *gorm.DB) error { return insertFinals(tx, []*finalWrite{f}) }, final: f})
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// finalWrite is one InsertFinal: a row and its optional event.
type finalWrite struct {
	c  *Certificate
	ev *Event
}

const (
	insertCertSQL = `INSERT INTO certificates (serial, ca, profile, common_name, sans, cluster, key_algorithm, status, not_before, not_after,
		pem, arn, fingerprint, requester, idempotency_key, idem_requester, request_hash, idempotency_token, request_id, failure_reason, csr,
		created_at, updated_at) VALUES `
	certTuple      = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertEventSQL = `INSERT INTO events (ca, type, time, serial, principal, request_id, source_addr, outcome, details) VALUES `
	eventTuple     = `(?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// insertFinals writes the rows and events of fs with plain INSERTs: this is
// the hot path of every local-CA issuance, and GORM's reflective Create
// (with RETURNING) cost more than the SQL itself. No caller needs the ids.
func insertFinals(tx *gorm.DB, fs []*finalWrite) error {
	certSQL, certArgs, eventSQL, eventArgs, err := finalStatements(tx.NowFunc(), fs)
	if err != nil {
		return err
	}
	if err := tx.Exec(certSQL, certArgs...).Error; err != nil {
		return err
	}
	if eventSQL == "" {
		return nil
	}
	return tx.Exec(eventSQL, eventArgs...).Error
}

// finalStatements builds the INSERTs of fs (eventSQL is "" when no row has
// an event) and stamps the rows and events with now.
func finalStatements(now time.Time, fs []*finalWrite) (certSQL string, certArgs []any, eventSQL string, eventArgs []any, err error) {
	certArgs = make([]any, 0, 23*len(fs))
	events := 0
	for _, f := range fs {
		c := f.c
		sans, err := json.Marshal(c.SANs)
		if err != nil {
			return "", nil, "", nil, err
		}
		certArgs = append(certArgs, c.Serial, c.CA, c.Profile, c.CommonName, string(sans), c.Cluster, c.KeyAlgorithm, c.Status,
			c.NotBefore.UTC(), c.NotAfter.UTC(), c.PEM, c.ARN, c.Fingerprint, c.Requester, c.IdempotencyKey, c.IdemRequester,
			c.RequestHash, c.IdempotencyToken, c.RequestID, c.FailureReason, c.CSR, now, now)
		c.CreatedAt, c.UpdatedAt = now, now
		if f.ev == nil {
			continue
		}
		ev := f.ev
		if ev.Time.IsZero() {
			ev.Time = now
		}
		details, err := json.Marshal(ev.Details)
		if err != nil {
			return "", nil, "", nil, err
		}
		eventArgs = append(eventArgs, ev.CA, ev.Type, ev.Time.UTC(), ev.Serial, ev.Principal, ev.RequestID, ev.SourceAddr, ev.Outcome, string(details))
		events++
	}
	certSQL = tuples(insertCertSQL, certTuple, len(fs))
	if events > 0 {
		eventSQL = tuples(insertEventSQL, eventTuple, events)
	}
	return certSQL, certArgs, eventSQL, eventArgs, nil
}

// insertFinalsOneStatement writes fs as one statement, atomic on its own:
// PostgreSQL runs a data-modifying WITH and the main INSERT as one statement
// in one implicit transaction, so the batch needs no BEGIN and COMMIT round
// trips.
func insertFinalsOneStatement(db *gorm.DB, fs []*finalWrite) error {
	certSQL, certArgs, eventSQL, eventArgs, err := finalStatements(db.NowFunc(), fs)
	if err != nil {
		return err
	}
	if eventSQL == "" {
		return db.Exec(certSQL, certArgs...).Error
	}
	return db.Exec("WITH c AS ("+certSQL+") "+eventSQL, append(certArgs, eventArgs...)...).Error
}

// tuples builds "INSERT … VALUES (…), (…)" for n rows; the one-row forms,
// by far the most frequent, are built once.
func tuples(head, tuple string, n int) string {
	if n == 1 {
		switch head {
		case insertCertSQL:
			return oneCertSQL
		case insertEventSQL:
			return oneEventSQL
		}
	}
	var b strings.Builder
	b.Grow(len(head) + n*(len(tuple)+2))
	b.WriteString(head)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(tuple)
	}
	return b.String()
}

var (
	oneCertSQL  = insertCertSQL + certTuple
	oneEventSQL = insertEventSQL + eventTuple
)

// GetBySerial finds a certificate by its canonical serial.
func (s *Store) GetBySerial(ctx context.Context, serial string) (*Certificate, error) {
	var c Certificate
	err := s.db.WithContext(ctx).Where("serial = ?", serial).Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	return &c, err
}

// GetByID finds a certificate row by id.
func (s *Store) GetByID(ctx context.Context, id uint64) (*Certificate, error) {
	var c Certificate
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	return &c, err
}

// GetByIdempotencyKey finds the row a principal's key already produced.
func (s *Store) GetByIdempotencyKey(ctx context.Context, requester, key string) (*Certificate, error) {
	var c Certificate
	err := s.db.WithContext(ctx).Where("idem_requester = ? AND idempotency_key = ?", requester, key).Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	return &c, err
}

// ListPending returns rows still pending, oldest first.
func (s *Store) ListPending(ctx context.Context, olderThan time.Time, limit int) ([]Certificate, error) {
	var out []Certificate
	err := s.db.WithContext(ctx).Where("status = ? AND created_at < ?", StatusPending, olderThan).Order("id").Limit(limit).Find(&out).Error
	return out, err
}

// Revoke marks an issued certificate revoked and writes the event, once: a
// row already revoked (by this or another replica) yields ErrConflict and
// changes nothing.
func (s *Store) Revoke(ctx context.Context, serial, reason string, at time.Time, ev *Event) (*Certificate, error) {
	var out *Certificate
	err := s.w.do(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&Certificate{}).Where("serial = ? AND status = ?", serial, StatusIssued).Updates(map[string]any{
			"status": StatusRevoked, "revoked_at": at.UTC(), "revocation_reason": reason, "updated_at": tx.NowFunc(),
		})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrConflict
		}
		if ev != nil {
			if err := tx.Create(ev).Error; err != nil {
				return err
			}
		}
		var c Certificate
		if err := tx.Where("serial = ?", serial).Take(&c).Error; err != nil {
			return err
		}
		out = &c
		return nil
	})
	return out, err
}

// Revoked lists a CA's revoked certificates (for its CRL).
func (s *Store) Revoked(ctx context.Context, caName string) ([]Certificate, error) {
	var out []Certificate
	err := s.db.WithContext(ctx).Select("id", "serial", "revoked_at", "revocation_reason", "not_after").
		Where("ca = ? AND status = ?", caName, StatusRevoked).Order("id").Find(&out).Error
	return out, err
}

// CertFilter selects certificates for listing.
type CertFilter struct {
	Profile       string
	Status        string
	CommonName    string
	CA            string
	Requester     string // empty: everyone's
	ExpiresBefore *time.Time
	Limit         int
	PageToken     string
}

// ErrBadPageToken is returned for a token this store did not issue.
var ErrBadPageToken = errors.New("invalid page_token")

func encodeCursor(parts ...uint64) string {
	b := make([]byte, 8*len(parts))
	for i, p := range parts {
		binary.BigEndian.PutUint64(b[8*i:], p)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(tok string, n int) ([]uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 8*n {
		return nil, ErrBadPageToken
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return out, nil
}

// ListCertificates pages newest first by id (keyset: id < cursor), so a
// page costs the same at any depth.
func (s *Store) ListCertificates(ctx context.Context, f CertFilter) ([]Certificate, string, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q := s.db.WithContext(ctx).Model(&Certificate{}).Omit("pem")
	if f.Profile != "" {
		q = q.Where("profile = ?", f.Profile)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.CommonName != "" {
		q = q.Where("common_name = ?", f.CommonName)
	}
	if f.CA != "" {
		q = q.Where("ca = ?", f.CA)
	}
	if f.Requester != "" {
		q = q.Where("requester = ?", f.Requester)
	}
	if f.ExpiresBefore != nil {
		// "What expires before T" is read soonest first, and paged on
		// (not_after, id) so the (status,) not_after index serves it at any
		// table size; every other listing pages newest first on id.
		q = q.Where("not_after < ?", f.ExpiresBefore.UTC())
		if f.PageToken != "" {
			cur, err := decodeCursor(f.PageToken, 2)
			if err != nil {
				return nil, "", err
			}
			t := time.Unix(0, int64(cur[0])).UTC()
			q = q.Where("(not_after > ?) OR (not_after = ? AND id > ?)", t, t, cur[1])
		}
		var out []Certificate
		if err := q.Order("not_after ASC").Order("id ASC").Limit(f.Limit + 1).Find(&out).Error; err != nil {
			return nil, "", err
		}
		next := ""
		if len(out) > f.Limit {
			out = out[:f.Limit]
			last := out[len(out)-1]
			next = encodeCursor(uint64(last.NotAfter.UnixNano()), last.ID)
		}
		return out, next, nil
	}
	if f.PageToken != "" {
		cur, err := decodeCursor(f.PageToken, 1)
		if err != nil {
			return nil, "", err
		}
		q = q.Where("id < ?", cur[0])
	}
	var out []Certificate
	if err := q.Order("id DESC").Limit(f.Limit + 1).Find(&out).Error; err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = encodeCursor(out[len(out)-1].ID)
	}
	return out, next, nil
}

// AddEvent writes one event.
func (s *Store) AddEvent(ctx context.Context, ev *Event) error {
	return s.w.do(ctx, func(tx *gorm.DB) error { return tx.Create(ev).Error })
}

// EventFilter selects events.
type EventFilter struct {
	// Serial narrows to one certificate (the events table is indexed on it).
	Serial      string
	CA          string
	Type        string
	Principal   string
	Since       *time.Time
	Until       *time.Time
	Limit       int
	PageToken   string
	OldestFirst bool
}

// ListEvents pages by (time, id) in the requested direction.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, string, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q := s.db.WithContext(ctx).Model(&Event{})
	if f.Serial != "" {
		q = q.Where("serial = ?", f.Serial)
	}
	if f.CA != "" {
		q = q.Where("ca = ?", f.CA)
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if f.Principal != "" {
		q = q.Where("principal = ?", f.Principal)
	}
	if f.Since != nil {
		q = q.Where("time >= ?", f.Since.UTC())
	}
	if f.Until != nil {
		q = q.Where("time < ?", f.Until.UTC())
	}
	if f.PageToken != "" {
		cur, err := decodeCursor(f.PageToken, 2)
		if err != nil {
			return nil, "", err
		}
		t := time.Unix(0, int64(cur[0])).UTC()
		if f.OldestFirst {
			q = q.Where("(time > ?) OR (time = ? AND id > ?)", t, t, cur[1])
		} else {
			q = q.Where("(time < ?) OR (time = ? AND id < ?)", t, t, cur[1])
		}
	}
	if f.OldestFirst {
		q = q.Order("time ASC").Order("id ASC")
	} else {
		q = q.Order("time DESC").Order("id DESC")
	}
	var out []Event
	if err := q.Limit(f.Limit + 1).Find(&out).Error; err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = encodeCursor(uint64(last.Time.UnixNano()), last.ID)
	}
	return out, next, nil
}

// UpsertCA stores the last known state of a CA.
func (s *Store) UpsertCA(ctx context.Context, ca *CertificateAuthority) error {
	return s.w.do(ctx, func(tx *gorm.DB) error { return tx.Clauses(clause.OnConflict{UpdateAll: true}).Create(ca).Error })
}

// ListCAs returns every stored CA.
func (s *Store) ListCAs(ctx context.Context) ([]CertificateAuthority, error) {
	var out []CertificateAuthority
	err := s.db.WithContext(ctx).Order("name").Find(&out).Error
	return out, err
}
