package issuance

// Core issuance service tests: the service refuses a certificate that is not
// exactly what the profile says (the guard for PCA templates), records every
// outcome, and replays Idempotency-Key requests. Helpers start with "sv" so
// they cannot collide with the other test files of this package.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// svBackend wraps the local CA and lets a test bend the request it signs,
// as a misconfigured PCA template would.
type svBackend struct {
	*ca.Local
	kind    string // "" = the embedded Local's "local"
	bend    func(req *ca.SignRequest)
	err     error
	sawRow  func(ctx context.Context, req *ca.SignRequest)
	signed  int
	lastReq *ca.SignRequest
}

func (b *svBackend) Sign(ctx context.Context, req *ca.SignRequest) (*ca.SignResult, error) {
	b.signed++
	b.lastReq = req
	if b.sawRow != nil {
		b.sawRow(ctx, req)
	}
	if b.err != nil {
		return nil, b.err
	}
	r := *req
	if b.bend != nil {
		p := *req.Profile
		r.Profile = &p
		b.bend(&r)
	}
	return b.Local.Sign(ctx, &r)
}

type svEnv struct {
	svc *Service
	st  *store.Store
	be  *svBackend
}

func svSetup(t *testing.T) *svEnv {
	t.Helper()
	dir := t.TempDir()
	local, err := ca.OpenLocal(ca.LocalOptions{Dir: dir + "/ca"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	be := &svBackend{Local: local}
	svc := &Service{Backend: be, Store: st, Profiles: ca.DefaultProfiles(0), Log: zap.NewNop(), Metrics: metrics.New(), Now: time.Now}
	return &svEnv{svc: svc, st: st, be: be}
}

func svCaller(principal, key string) Caller {
	return Caller{Principal: principal, Policy: policy.AllowAll(), RequestID: "sv-test", IdempotencyKey: key}
}

func svCount(t *testing.T, st *store.Store, model any, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := st.DB().Model(model).Where(where, args...).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestServiceRefusesWrongCertificates: whatever the backend returns must be
// exactly the profile; otherwise the client gets a 502, the row is failed,
// and no certificate is handed out or recorded as issued.
func TestServiceRefusesWrongCertificates(t *testing.T) {
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name string
		bend func(req *ca.SignRequest)
	}{
		{"extra key usage (keyCertSign)", func(r *ca.SignRequest) { r.Profile.KeyUsage |= x509.KeyUsageCertSign }},
		{"missing key usage", func(r *ca.SignRequest) { r.Profile.KeyUsage = x509.KeyUsageDigitalSignature }},
		{"extra EKU", func(r *ca.SignRequest) {
			r.Profile.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}},
		{"validity beyond 7 days", func(r *ca.SignRequest) { r.NotAfter = r.NotBefore.Add(7*ca.Day + time.Minute) }},
		{"another key", func(r *ca.SignRequest) { r.PublicKey = otherKey.Public() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := svSetup(t)
			e.be.bend = c.bend
			res, err := e.svc.Issue(context.Background(), svCaller("alice", ""), Request{Profile: "server", CommonName: "api.example.com"})
			if err == nil {
				t.Fatalf("issued %s despite the bent certificate", res.Serial)
			}
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || ae.Code != apierror.CodeUpstream {
				t.Fatalf("error %v, want 502 %s", err, apierror.CodeUpstream)
			}
			if n := svCount(t, e.st, &store.Certificate{}, "status = ?", store.StatusFailed); n != 1 {
				t.Errorf("%d failed rows, want 1", n)
			}
			if n := svCount(t, e.st, &store.Certificate{}, "status <> ?", store.StatusFailed); n != 0 {
				t.Errorf("%d rows not failed, want 0", n)
			}
			if n := svCount(t, e.st, &store.Event{}, "type = ?", store.EventIssued); n != 0 {
				t.Errorf("%d issued events, want 0", n)
			}
			if n := svCount(t, e.st, &store.Event{}, "type = ?", store.EventFailed); n != 1 {
				t.Errorf("%d failed events, want 1", n)
			}
		})
	}
	t.Run("backend error", func(t *testing.T) {
		e := svSetup(t)
		e.be.err = apierror.Unavailable(apierror.CodeCAUnavailable, time.Second, "CA down")
		_, err := e.svc.Issue(context.Background(), svCaller("alice", ""), Request{Profile: "client", CommonName: "c.example.com"})
		if ae := apierror.As(err); ae == nil || ae.Status != http.StatusServiceUnavailable {
			t.Fatalf("error %v, want the backend's 503", err)
		}
		if n := svCount(t, e.st, &store.Certificate{}, "status = ?", store.StatusFailed); n != 1 {
			t.Errorf("%d failed rows, want 1", n)
		}
	})
}

func (b *svBackend) Kind() string {
	if b.kind != "" {
		return b.kind
	}
	return b.Local.Kind()
}

// TestServiceWritesBeforeSigning: for a CA outside the process (any kind but
// "local") and for any request with an Idempotency-Key, the pending row
// exists, committed, when the backend is asked; the in-process local CA
// without a key writes its row once, after signing (nothing it signed has
// left the process before that). The issued row afterwards carries the
// certificate.
func TestServiceWritesBeforeSigning(t *testing.T) {
	for _, tc := range []struct {
		name, kind, idem string
		wantPending      bool
	}{
		{"external CA", "external-test", "", true},
		{"local CA with Idempotency-Key", "", "key-1", true},
		{"local CA, one write", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testWritesBeforeSigning(t, tc.kind, tc.idem, tc.wantPending) })
	}
}

func testWritesBeforeSigning(t *testing.T, kind, idem string, wantPending bool) {
	e := svSetup(t)
	e.be.kind = kind
	var during *store.Certificate
	var rowsDuring int64 = -1
	e.be.sawRow = func(ctx context.Context, req *ca.SignRequest) {
		during, _ = e.st.GetBySerial(ctx, ca.FormatSerial(req.Serial))
		rowsDuring = svCount(t, e.st, &store.Certificate{}, "1 = 1")
	}
	res, err := e.svc.Issue(context.Background(), svCaller("alice", idem), Request{Profile: "machine", CommonName: "m.example.com", SANs: []string{"10.1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	if wantPending {
		if kind != "" {
			// An external CA picks its own serial; find the row by key.
			var rows []store.Certificate
			if err := e.st.DB().Find(&rows).Error; err != nil || rowsDuring != 1 {
				t.Fatalf("rows while signing: %d (%v)", rowsDuring, err)
			}
		} else if during == nil || during.Status != store.StatusPending {
			t.Fatalf("while signing the row was %+v, want a committed pending row", during)
		}
	} else if rowsDuring != 0 {
		t.Fatalf("%d rows while the local CA signed, want 0 (one write after signing)", rowsDuring)
	}
	row, err := e.st.GetBySerial(context.Background(), res.Serial)
	if err != nil || row.Status != store.StatusIssued || row.PEM != res.Certificate || row.Requester != "alice" || row.Fingerprint == "" {
		t.Fatalf("issued row %+v, %v", row, err)
	}
	if res.PrivateKey == "" {
		t.Error("no private key for a server-generated key")
	}
	if n := svCount(t, e.st, &store.Event{}, "type = ? AND serial = ?", store.EventIssued, res.Serial); n != 1 {
		t.Errorf("%d issued events for %s, want 1", n, res.Serial)
	}
}

// TestServiceIdempotencyKey: the same key and body return the first result;
// another body is refused; another principal's identical key is independent.
func TestServiceIdempotencyKey(t *testing.T) {
	e := svSetup(t)
	ctx := context.Background()
	req := Request{Profile: "server", CommonName: "idem.example.com"}
	first, err := e.svc.Issue(ctx, svCaller("alice", "key-1"), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.Issue(ctx, svCaller("alice", "key-1"), req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.Serial != first.Serial || again.Certificate != first.Certificate || again.Chain != first.Chain || again.Root != first.Root {
		t.Errorf("replay = %+v, want the first result (serial %s) marked replayed", again, first.Serial)
	}
	if e.be.signed != 1 {
		t.Errorf("the backend signed %d times, want 1", e.be.signed)
	}
	_, err = e.svc.Issue(ctx, svCaller("alice", "key-1"), Request{Profile: "server", CommonName: "other.example.com"})
	if ae := apierror.As(err); ae == nil || ae.Status != http.StatusUnprocessableEntity || ae.Code != apierror.CodeIdempotencyReuse {
		t.Errorf("same key, other body: %v, want 422 %s", err, apierror.CodeIdempotencyReuse)
	}
	bob, err := e.svc.Issue(ctx, svCaller("bob", "key-1"), req)
	if err != nil || bob.Serial == first.Serial || bob.Replayed {
		t.Errorf("another principal's key: %+v, %v; want a new certificate", bob, err)
	}
	if n := svCount(t, e.st, &store.Certificate{}, "status = ?", store.StatusIssued); n != 2 {
		t.Errorf("%d issued rows, want 2", n)
	}
}
