package issuance

// Reconciliation of pending rows, against the AWS PCA double (real SDK
// client, real wire protocol) and a real SQLite store. Every test ends with
// no row left pending. Helpers are prefixed "rc" so they cannot collide with
// other test files of this package.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// rcClock is an adjustable clock: the real time plus an offset.
type rcClock struct{ off atomic.Int64 }

func (c *rcClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *rcClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type rcEnv struct {
	svc      *Service
	st       *store.Store
	dbl      *pcatest.Server
	dblClock *rcClock // the double's clock (issue readiness, idempotency window)
	svcClock *rcClock // the service's clock (reconcile ages)
}

// rcSetAWSEnv points the SDK's default chain at static test credentials
// (servertest.SetAWSTestEnv, which this package cannot import).
func rcSetAWSEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCERTGATETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "certgate-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "")
}

func rcStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// rcPCA builds a Service on the PCA backend pointed at a fresh double.
func rcPCA(t *testing.T, issueTimeout time.Duration) *rcEnv {
	t.Helper()
	rcSetAWSEnv(t)
	e := &rcEnv{dblClock: &rcClock{}, svcClock: &rcClock{}}
	dbl, err := pcatest.New(pcatest.WithClock(e.dblClock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dbl.Close)
	e.dbl = dbl
	arns := map[string]string{}
	for _, n := range ca.Names {
		arns[n] = dbl.ARN(n)
	}
	pc, err := ca.NewPCAClient(context.Background(), ca.PCAConfig{
		Region: dbl.Region(), Endpoint: dbl.URL(), ARNs: arns, MaxRetries: 3,
		RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond, IssueTimeout: issueTimeout,
	}, zap.NewNop(), metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	e.st = rcStore(t)
	profiles := ca.DefaultProfiles(365 * ca.Day)
	e.svc = &Service{Backend: pc, Store: e.st, Profiles: profiles, Log: zap.NewNop(), Metrics: metrics.New(), Now: e.svcClock.Now}
	return e
}

func rcCaller(key string) Caller {
	return Caller{Principal: "admin", Policy: policy.AllowAll(), RequestID: "rc", IdempotencyKey: key}
}

func rcReq(cn string) Request {
	return Request{Profile: "server", CommonName: cn, SANs: []string{cn, "10.0.0.7"}}
}

// rcOnlyRow returns the one certificate row whose common name is cn.
func rcOnlyRow(t *testing.T, st *store.Store, cn string) store.Certificate {
	t.Helper()
	var rows []store.Certificate
	if err := st.DB().Where("common_name = ?", cn).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows for %s, want 1", len(rows), cn)
	}
	return rows[0]
}

func rcNoPending(t *testing.T, st *store.Store) {
	t.Helper()
	var n int64
	if err := st.DB().Model(&store.Certificate{}).Where("status = ?", store.StatusPending).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows left pending after reconciliation", n)
	}
}

func rcEvents(t *testing.T, st *store.Store, typ string) []store.Event {
	t.Helper()
	var evs []store.Event
	if err := st.DB().Where("type = ?", typ).Order("id").Find(&evs).Error; err != nil {
		t.Fatal(err)
	}
	return evs
}

// rcIssueTokens are the IdempotencyTokens of every IssueCertificate call.
func rcIssueTokens(dbl *pcatest.Server) []string {
	var out []string
	for _, c := range dbl.Calls(pcatest.OpIssueCertificate) {
		out = append(out, c.IdempotencyToken)
	}
	return out
}

// rcLostAnswer issues one certificate whose IssueCertificate answers are all
// lost after PCA processed the first: the certificate is minted, certgate
// never learns its ARN, and the row must stay pending without one.
// settleCount returns once the double's count of op has not moved for 300 ms
// (at most 5 s).
func settleCount(dbl *pcatest.Server, op string) {
	last, since := dbl.Count(op), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && time.Since(since) < 300*time.Millisecond; {
		time.Sleep(50 * time.Millisecond)
		if n := dbl.Count(op); n != last {
			last, since = n, time.Now()
		}
	}
}

func rcLostAnswer(t *testing.T, e *rcEnv, cn, key string) store.Certificate {
	t.Helper()
	e.dbl.InjectNext(pcatest.OpIssueCertificate, 4, pcatest.Fault{AfterProcessing: true, Drop: true})
	_, err := e.svc.Issue(context.Background(), rcCaller(key), rcReq(cn))
	if !errors.Is(err, ca.ErrOutcomeUnknown) {
		t.Fatalf("issue with every answer lost: err %v, want ErrOutcomeUnknown", err)
	}
	if ae := apierror.As(err); ae.Status != 503 || !ae.Retryable {
		t.Errorf("client saw %d %s retryable=%v, want a retryable 503", ae.Status, ae.Code, ae.Retryable)
	}
	// Up to 4 attempts (max_retries 3). A retry on a pooled connection the
	// double already dropped can fail before it reaches the double, so fewer
	// may arrive; the faults not consumed must not leak into what follows.
	// An attempt the client gave up on can still be counted by the double a
	// moment later: wait until the count is settled, so callers comparing
	// against it later see only calls made after this point.
	settleCount(e.dbl, pcatest.OpIssueCertificate)
	if n := e.dbl.Count(pcatest.OpIssueCertificate); n < 2 || n > 4 {
		t.Errorf("%d IssueCertificate attempts, want 2 to 4 (max_retries 3)", n)
	}
	e.dbl.ClearFaults()
	if n := len(e.dbl.IssuedCerts()); n != 1 {
		t.Fatalf("double minted %d certificates, want 1 (retries carry the same token)", n)
	}
	row := rcOnlyRow(t, e.st, cn)
	if row.Status != store.StatusPending || row.ARN != "" || row.Serial != nil {
		t.Fatalf("row after lost answers: status %s arn %q serial %v; want pending, no ARN, no serial", row.Status, row.ARN, row.Serial)
	}
	if len(row.CSR) == 0 {
		t.Fatal("pending PCA row has no CSR: reconciliation could not resubmit it")
	}
	return row
}

func TestReconcilePendingWithARNIsFetched(t *testing.T) {
	e := rcPCA(t, 400*time.Millisecond)
	// PCA accepts the request (ARN recorded) but takes longer than
	// issue_timeout: the request gives up with the outcome unknown.
	e.dbl.SetIssueDelay(time.Hour)
	_, err := e.svc.Issue(context.Background(), rcCaller(""), rcReq("arn.rc.internal"))
	if !errors.Is(err, ca.ErrOutcomeUnknown) {
		t.Fatalf("slow issuance: err %v, want ErrOutcomeUnknown", err)
	}
	if ae := apierror.As(err); ae.Status != 504 {
		t.Errorf("slow issuance: %d %s, want 504", ae.Status, ae.Code)
	}
	row := rcOnlyRow(t, e.st, "arn.rc.internal")
	if row.Status != store.StatusPending || row.ARN == "" {
		t.Fatalf("row: status %s arn %q, want pending with the ARN recorded", row.Status, row.ARN)
	}
	issues := e.dbl.Count(pcatest.OpIssueCertificate)

	// Still in progress at PCA: the pass leaves the row pending.
	st, err := e.svc.Reconcile(context.Background(), e.st, 0)
	if err != nil || st.Left != 1 || st.Issued != 0 {
		t.Fatalf("reconcile while PCA is still issuing: %+v, %v; want the row left pending", st, err)
	}
	// PCA finishes (the double's clock passes the issue delay).
	e.dblClock.Advance(2 * time.Hour)
	st, err = e.svc.Reconcile(context.Background(), e.st, 0)
	if err != nil || st.Issued != 1 || st.Seen != 1 {
		t.Fatalf("reconcile: %+v, %v; want one row issued", st, err)
	}
	row = rcOnlyRow(t, e.st, "arn.rc.internal")
	minted := e.dbl.IssuedCerts()
	if len(minted) != 1 {
		t.Fatalf("double minted %d, want 1", len(minted))
	}
	if row.Status != store.StatusIssued || row.Serial == nil || *row.Serial != ca.FormatSerial(minted[0].Cert.SerialNumber) || row.ARN != minted[0].Arn {
		t.Fatalf("row: status %s serial %v arn %s; want issued with the minted %s (%s)", row.Status, row.Serial, row.ARN,
			ca.FormatSerial(minted[0].Cert.SerialNumber), minted[0].Arn)
	}
	if row.PEM == "" || row.Fingerprint == "" {
		t.Error("reconciled row has no PEM or fingerprint")
	}
	if n := e.dbl.Count(pcatest.OpIssueCertificate); n != issues {
		t.Errorf("reconciliation by ARN called IssueCertificate %d more times; it should only fetch", n-issues)
	}
	evs := rcEvents(t, e.st, store.EventIssued)
	if len(evs) != 1 || evs[0].Serial != *row.Serial || evs[0].Details["reconciled"] != "true" {
		t.Errorf("issued events %+v, want one for %s marked reconciled", evs, *row.Serial)
	}
	rcNoPending(t, e.st)
}

func TestReconcileResubmitsWithSameToken(t *testing.T) {
	e := rcPCA(t, 5*time.Second)
	row := rcLostAnswer(t, e, "resubmit.rc.internal", "key-resubmit")
	firstToken := rcIssueTokens(e.dbl)[0]

	// A client retrying the key meanwhile is told to wait, not issued again.
	_, err := e.svc.Issue(context.Background(), rcCaller("key-resubmit"), rcReq("resubmit.rc.internal"))
	if ae := apierror.As(err); ae == nil || ae.Status != 409 || !ae.Retryable {
		t.Fatalf("retry while pending: %v, want a retryable 409", err)
	}

	e.svcClock.Advance(time.Minute) // older than min_age, well inside PCA's window
	st, err := e.svc.Reconcile(context.Background(), e.st, 30*time.Second)
	if err != nil || st.Issued != 1 {
		t.Fatalf("reconcile: %+v, %v; want one row issued", st, err)
	}
	calls := e.dbl.Calls(pcatest.OpIssueCertificate)
	if len(calls) != 5 {
		t.Fatalf("%d IssueCertificate calls, want the 4 lost ones and 1 resubmission", len(calls))
	}
	for i, c := range calls {
		if c.IdempotencyToken != firstToken {
			t.Errorf("IssueCertificate call %d carried token %q, want the first call's %q", i, c.IdempotencyToken, firstToken)
		}
	}
	last := calls[len(calls)-1]
	if !last.Replayed {
		t.Error("the resubmission was not answered from PCA's idempotency record")
	}
	if last.ReplayMismatch {
		t.Error("the resubmission differs from the original request (CSR, template, validity or passthrough): PCA would return the first certificate for a different request")
	}
	minted := e.dbl.IssuedCerts()
	if len(minted) != 1 {
		t.Fatalf("double minted %d certificates, want 1 (no second mint)", len(minted))
	}
	got := rcOnlyRow(t, e.st, "resubmit.rc.internal")
	want := ca.FormatSerial(minted[0].Cert.SerialNumber)
	if got.ID != row.ID || got.Status != store.StatusIssued || got.Serial == nil || *got.Serial != want {
		t.Fatalf("row %d: status %s serial %v; want row %d issued as the minted %s", got.ID, got.Status, got.Serial, row.ID, want)
	}
	if got.IdempotencyToken != firstToken {
		t.Errorf("row records idempotency token %q, PCA saw %q", got.IdempotencyToken, firstToken)
	}
	// The client's retry now gets the certificate.
	res, err := e.svc.Issue(context.Background(), rcCaller("key-resubmit"), rcReq("resubmit.rc.internal"))
	if err != nil || !res.Replayed || res.Serial != want {
		t.Fatalf("retry after reconciliation: %+v, %v; want a replay of %s", res, err, want)
	}
	rcNoPending(t, e.st)
}

func TestReconcileAfterPCAWindowFails(t *testing.T) {
	e := rcPCA(t, 5*time.Second)
	rcLostAnswer(t, e, "late.rc.internal", "key-late")
	issues := e.dbl.Count(pcatest.OpIssueCertificate)

	// Six minutes later PCA no longer honours the token: resubmitting would
	// mint a second certificate, so the row is failed with the reason.
	e.svcClock.Advance(6 * time.Minute)
	e.dblClock.Advance(6 * time.Minute)
	st, err := e.svc.Reconcile(context.Background(), e.st, 45*time.Second)
	if err != nil || st.Failed != 1 {
		t.Fatalf("reconcile: %+v, %v; want one row failed", st, err)
	}
	if n := e.dbl.Count(pcatest.OpIssueCertificate); n != issues {
		t.Errorf("reconciliation called IssueCertificate after PCA's idempotency window (%d calls)", n-issues)
	}
	if n := len(e.dbl.IssuedCerts()); n != 1 {
		t.Errorf("double minted %d certificates, want still 1", n)
	}
	row := rcOnlyRow(t, e.st, "late.rc.internal")
	if row.Status != store.StatusFailed || !strings.Contains(row.FailureReason, "idempotency window") {
		t.Fatalf("row: status %s reason %q; want failed naming the idempotency window", row.Status, row.FailureReason)
	}
	var f storedFailure
	if err := json.Unmarshal([]byte(row.FailureReason), &f); err != nil || f.Code == "" || f.Status == 0 {
		t.Errorf("failure reason %q is not the stored error shape: %v", row.FailureReason, err)
	}
	evs := rcEvents(t, e.st, store.EventFailed)
	if len(evs) == 0 || evs[len(evs)-1].Details["reconciled"] != "true" {
		t.Errorf("failed events %+v, want one marked reconciled", evs)
	}
	// The key now replays the failure.
	_, err = e.svc.Issue(context.Background(), rcCaller("key-late"), rcReq("late.rc.internal"))
	if ae := apierror.As(err); ae == nil || ae.Code != f.Code {
		t.Errorf("replay of the failed key: %v, want the stored %s", err, f.Code)
	}
	rcNoPending(t, e.st)
}

func TestReconcileCreatedAtBeyondWindowFails(t *testing.T) {
	// The same, with the row's created_at set back instead of the clock.
	e := rcPCA(t, 5*time.Second)
	row := rcLostAnswer(t, e, "old.rc.internal", "")
	if err := e.st.DB().Model(&store.Certificate{}).Where("id = ?", row.ID).
		Update("created_at", row.CreatedAt.Add(-10*time.Minute)).Error; err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Reconcile(context.Background(), e.st, 45*time.Second)
	if err != nil || st.Failed != 1 {
		t.Fatalf("reconcile: %+v, %v; want one row failed", st, err)
	}
	if got := rcOnlyRow(t, e.st, "old.rc.internal"); got.Status != store.StatusFailed || got.FailureReason == "" {
		t.Fatalf("row: status %s reason %q; want failed with a reason", got.Status, got.FailureReason)
	}
	rcNoPending(t, e.st)
}

func TestReconcileTransientErrorLeavesPendingThenIssues(t *testing.T) {
	e := rcPCA(t, 5*time.Second)
	rcLostAnswer(t, e, "outage.rc.internal", "")
	e.dbl.SetDown(pcatest.DownUnavailable)
	st, err := e.svc.Reconcile(context.Background(), e.st, 0)
	if err != nil || st.Left != 1 || st.Failed != 0 {
		t.Fatalf("reconcile during a PCA outage: %+v, %v; want the row left pending, not failed", st, err)
	}
	e.dbl.SetDown(pcatest.Up)
	st, err = e.svc.Reconcile(context.Background(), e.st, 0)
	if err != nil || st.Issued != 1 {
		t.Fatalf("reconcile after the outage: %+v, %v; want the row issued", st, err)
	}
	if n := len(e.dbl.IssuedCerts()); n != 1 {
		t.Errorf("double minted %d, want 1", n)
	}
	rcNoPending(t, e.st)
}

func TestReconcileResubmitRefusedFails(t *testing.T) {
	// PCA did not process the lost request and now refuses it (the CA was
	// disabled meanwhile): a definitive refusal fails the row.
	e := rcPCA(t, 5*time.Second)
	e.dbl.InjectNext(pcatest.OpIssueCertificate, 4, pcatest.Fault{Drop: true})
	if _, err := e.svc.Issue(context.Background(), rcCaller(""), rcReq("refused.rc.internal")); !errors.Is(err, ca.ErrOutcomeUnknown) {
		t.Fatalf("dropped issuance: %v, want ErrOutcomeUnknown", err)
	}
	e.dbl.FailNext(pcatest.OpIssueCertificate, 1, "InvalidArgsException", 0)
	st, err := e.svc.Reconcile(context.Background(), e.st, 0)
	if err != nil || st.Failed != 1 {
		t.Fatalf("reconcile: %+v, %v; want the row failed", st, err)
	}
	row := rcOnlyRow(t, e.st, "refused.rc.internal")
	if row.Status != store.StatusFailed || !strings.Contains(row.FailureReason, "refused") {
		t.Errorf("row: status %s reason %q; want failed, naming the refusal", row.Status, row.FailureReason)
	}
	if n := len(e.dbl.IssuedCerts()); n != 0 {
		t.Errorf("double minted %d, want 0", n)
	}
	rcNoPending(t, e.st)
}

func TestReconcileLocalPendingFails(t *testing.T) {
	ctx := context.Background()
	st := rcStore(t)
	l, err := ca.OpenLocal(ca.LocalOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Backend: l, Store: st, Profiles: ca.DefaultProfiles(365 * ca.Day), Log: zap.NewNop(), Metrics: metrics.New(), Now: time.Now}
	// A local issuance that was written down but never finished: the process
	// died between CreatePending and Finish.
	serial := "abc123"
	row := &store.Certificate{CA: ca.ServerCA, Profile: "server", CommonName: "local.rc.internal", SANs: []string{"local.rc.internal"},
		Serial: &serial, Requester: "admin", RequestHash: strings.Repeat("0", 64), NotBefore: time.Now(), NotAfter: time.Now().Add(ca.Day)}
	if err := st.CreatePending(ctx, row); err != nil {
		t.Fatal(err)
	}
	// A live request's row (younger than min_age) is not touched.
	if s, err := svc.Reconcile(ctx, st, time.Hour); err != nil || s.Seen != 0 {
		t.Fatalf("reconcile with min_age 1h: %+v, %v; want the young row untouched", s, err)
	}
	s, err := svc.Reconcile(ctx, st, 0)
	if err != nil || s.Failed != 1 {
		t.Fatalf("reconcile: %+v, %v; want one row failed", s, err)
	}
	got := rcOnlyRow(t, st, "local.rc.internal")
	if got.Status != store.StatusFailed || !strings.Contains(got.FailureReason, "never handed out") {
		t.Errorf("row: status %s reason %q; want failed, never handed out", got.Status, got.FailureReason)
	}
	rcNoPending(t, st)
}

func TestRunReconcilerLoop(t *testing.T) {
	e := rcPCA(t, 5*time.Second)
	for _, cn := range []string{"loop1.rc.internal", "loop2.rc.internal"} {
		e.dbl.InjectNext(pcatest.OpIssueCertificate, 4, pcatest.Fault{AfterProcessing: true, Drop: true})
		if _, err := e.svc.Issue(context.Background(), rcCaller(""), rcReq(cn)); !errors.Is(err, ca.ErrOutcomeUnknown) {
			t.Fatalf("%s: %v, want ErrOutcomeUnknown", cn, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.RunReconciler(ctx, e.st, 0, 20*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int64
		if err := e.st.DB().Model(&store.Certificate{}).Where("status = ?", store.StatusIssued).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 rows issued after 10s of reconciliation passes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunReconciler did not return after its context ended")
	}
	if n := len(e.dbl.IssuedCerts()); n != 2 {
		t.Errorf("double minted %d, want 2", n)
	}
	rcNoPending(t, e.st)
}

// TestLostAnswerThenThrottledStaysPending: the first IssueCertificate attempt
// is processed but its answer is lost, and every retry is throttled. PCA has
// minted the certificate, so the row must not be failed (a failed row
// whose certificate exists is a certificate nobody will ever find):
// it stays pending for reconciliation, which finds the certificate.
//
// A first IssueCertificate whose answer is lost, then throttled retries:
// PCA minted a certificate, so the row must stay pending (PCAClient notes an
// unknown outcome on any attempt) and reconciliation records it.
func TestLostAnswerThenThrottledStaysPending(t *testing.T) {
	e := rcPCA(t, 5*time.Second)
	e.dbl.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, Drop: true})
	e.dbl.FailNext(pcatest.OpIssueCertificate, 3, "ThrottlingException", 0)
	_, err := e.svc.Issue(context.Background(), rcCaller(""), rcReq("throttled.rc.internal"))
	if err == nil {
		t.Fatal("issuance succeeded; want a throttling error")
	}
	if n := len(e.dbl.IssuedCerts()); n != 1 {
		t.Fatalf("double minted %d, want 1", n)
	}
	row := rcOnlyRow(t, e.st, "throttled.rc.internal")
	if row.Status == store.StatusFailed {
		t.Fatalf("row failed (%s) although PCA minted its certificate: the certificate is lost", row.FailureReason)
	}
	if _, err := e.svc.Reconcile(context.Background(), e.st, 0); err != nil {
		t.Fatal(err)
	}
	row = rcOnlyRow(t, e.st, "throttled.rc.internal")
	if row.Status != store.StatusIssued || row.Serial == nil || *row.Serial != ca.FormatSerial(e.dbl.IssuedCerts()[0].Cert.SerialNumber) {
		t.Fatalf("after reconciliation: status %s serial %v; want issued as the minted certificate", row.Status, row.Serial)
	}
	rcNoPending(t, e.st)
}
