//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

var (
	flagDuration = flag.Duration("duration", 150*time.Second, "time budget of each run (sqlite, postgres), settling included")
	flagIssued   = flag.Int("issued", 200, "successful issuances to reach before stopping")
	flagKills    = flag.Int("kills", 3, "SIGKILLs to deliver before stopping")
	flagWorkers  = flag.Int("workers", 8, "concurrent clients")
	flagSeed     = flag.Uint64("seed", 0, "random seed (0: from the clock); printed so a run can be repeated")
)

// Timing of the server under test: reconciliation must stay away from live
// requests (min_age > issue_timeout) and finish crashed ones quickly.
const (
	issueTimeout   = 5 * time.Second
	reconcileEvery = time.Second
	reconcileAge   = issueTimeout + 2*time.Second
)

func TestChaos(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "certgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/certgate")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("sqlite", func(t *testing.T) { runChaos(t, bin, "sqlite", "") })
	t.Run("postgres", func(t *testing.T) { runChaos(t, bin, "postgres", servertest.PostgresDSN(t)) })
}

// ---- the server process ----

type harness struct {
	t       *testing.T
	bin     string
	env     []string
	dataDir string
	dbl     *pcatest.Server
	client  *http.Client
	logf    *os.File

	addr  atomic.Value // string: the current listener
	token string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan error
	kills    int
	restarts int
}

// start runs the binary until it listens; a start that fails (its own
// certificate is issued through the faulty PCA) is retried.
func (h *harness) start() error {
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		err := h.startOnce()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("certgate did not start in 60 s (%d attempts): %w", attempt, err)
		}
		fmt.Fprintf(h.logf, "chaos: start attempt %d failed: %v\n", attempt, err)
		time.Sleep(200 * time.Millisecond)
	}
}

func (h *harness) startOnce() error {
	cmd := exec.Command(h.bin, "serve")
	cmd.Env = h.env
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(h.logf, line)
			if rest, ok := strings.CutPrefix(line, "certgate serving https://"); ok {
				a, _, _ := strings.Cut(rest, " ")
				addrc <- a
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addrc:
		h.addr.Store(a)
		h.mu.Lock()
		h.cmd, h.exited = cmd, exited
		h.mu.Unlock()
		if h.token == "" {
			tok, err := os.ReadFile(filepath.Join(h.dataDir, auth.TokenFileName))
			if err != nil {
				return err
			}
			h.token = strings.TrimSpace(string(tok))
		}
		return nil
	case err := <-exited:
		return fmt.Errorf("exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("no listener after 30 s")
	}
}

// signal sends sig and waits for the process to end.
func (h *harness) stop(sig syscall.Signal, wait time.Duration) error {
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case err := <-exited:
		if sig == syscall.SIGTERM && err != nil {
			return fmt.Errorf("exit after SIGTERM: %v", err)
		}
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("still running %s after %v", wait, sig)
	}
}

// ---- clients ----

type outcome struct {
	status int
	code   string
	retry  bool
	serial string
	err    error
}

func (h *harness) post(key string, body []byte) outcome {
	addr, _ := h.addr.Load().(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+addr+"/v1/certificates", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Idempotency-Key", key)
	resp, err := h.client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return outcome{status: resp.StatusCode, err: err}
	}
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode == http.StatusCreated {
		var res struct{ Serial string }
		if err := json.Unmarshal(raw, &res); err != nil || res.Serial == "" {
			return outcome{status: resp.StatusCode, err: fmt.Errorf("bad 201 body: %v", err)}
		}
		o.serial = res.Serial
		return o
	}
	var eb struct {
		Error struct {
			Code      string
			Retryable bool
		}
	}
	if json.Unmarshal(raw, &eb) == nil {
		o.code, o.retry = eb.Error.Code, eb.Error.Retryable
	} else {
		o.retry = resp.StatusCode >= 500 // not our error body: a proxy or a dying server
	}
	return o
}

// results is what the clients saw.
type results struct {
	mu        sync.Mutex
	received  map[string]string // Idempotency-Key → serial from the 201
	dupKeys   []string          // keys answered with two different serials
	failed    map[string]int    // final non-2xx by "status code"
	abandoned int               // keys still retrying at the deadline
	attempts  int
	transport int
	retried   map[int]int // retried answers by status
	abort     chan struct{}
}

func (r *results) ok() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.received)
}

// issueOne drives one key to a final answer, retrying the same key on
// transport errors and retryable answers.
func (h *harness) issueOne(res *results, key string, body []byte, giveUp time.Time) {
	for {
		o := h.post(key, body)
		res.mu.Lock()
		res.attempts++
		res.mu.Unlock()
		switch {
		case o.err != nil:
			res.mu.Lock()
			res.transport++
			res.mu.Unlock()
		case o.status == http.StatusCreated:
			res.mu.Lock()
			if prev, ok := res.received[key]; ok && prev != o.serial {
				res.dupKeys = append(res.dupKeys, fmt.Sprintf("%s: %s then %s", key, prev, o.serial))
			}
			res.received[key] = o.serial
			res.mu.Unlock()
			return
		case o.retry || o.status == http.StatusConflict || o.status == http.StatusTooManyRequests:
			res.mu.Lock()
			res.retried[o.status]++
			res.mu.Unlock()
		default:
			res.mu.Lock()
			res.failed[fmt.Sprintf("%d %s", o.status, o.code)]++
			res.mu.Unlock()
			return
		}
		if time.Now().After(giveUp) {
			res.mu.Lock()
			res.abandoned++
			res.mu.Unlock()
			return
		}
		select {
		case <-res.abort:
			return
		case <-time.After(time.Duration(100+rand.IntN(200)) * time.Millisecond):
		}
	}
}

// ---- the run ----

func runChaos(t *testing.T, bin, driver, dsn string) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var rngMu sync.Mutex
	randIntN := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
	t.Logf("seed %d (repeat with -args -seed=%d)", seed, seed)
	budget := time.Now().Add(*flagDuration)

	dbl := servertest.NewPCADouble(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	logPath := filepath.Join(t.TempDir(), "certgate.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	h := &harness{t: t, bin: bin, dataDir: dataDir, dbl: dbl, logf: logf,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: dbl.RootPool(), MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 64}}}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CERTGATE_") && !strings.HasPrefix(kv, "AWS_") {
			h.env = append(h.env, kv)
		}
	}
	h.env = append(h.env,
		"AWS_ACCESS_KEY_ID=AKIDCERTGATECHAOS", "AWS_SECRET_ACCESS_KEY=certgate-chaos-secret",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
		"CERTGATE_BACKEND=aws-pca", "CERTGATE_AWS_PCA_REGION="+dbl.Region(), "CERTGATE_AWS_PCA_ENDPOINT="+dbl.URL(),
		"CERTGATE_AWS_PCA_ROOT_CA_ARN="+dbl.ARN(ca.Root), "CERTGATE_AWS_PCA_CLIENT_CA_ARN="+dbl.ARN(ca.ClientCA),
		"CERTGATE_AWS_PCA_SERVER_CA_ARN="+dbl.ARN(ca.ServerCA), "CERTGATE_AWS_PCA_ISTIO_CA_ARN="+dbl.ARN(ca.IstioCA),
		"CERTGATE_AWS_PCA_ISSUE_TIMEOUT="+issueTimeout.String(),
		"CERTGATE_RECONCILE_INTERVAL="+reconcileEvery.String(), "CERTGATE_RECONCILE_MIN_AGE="+reconcileAge.String(),
		"CERTGATE_DATA_DIR="+dataDir, "CERTGATE_LISTEN="+freeAddr(t), "CERTGATE_SHUTDOWN_TIMEOUT=15s",
		"CERTGATE_AUTH_RATE_LIMIT=0", "CERTGATE_LOG_LEVEL=info", "CERTGATE_DATABASE_DRIVER="+driver,
	)
	if dsn != "" {
		h.env = append(h.env, "CERTGATE_DATABASE_DSN="+dsn)
	}
	dump := func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 40000 {
				b = b[len(b)-40000:]
			}
			t.Logf("server log (tail):\n%s", b)
		}
	}
	defer dump()
	defer func() { _ = h.stop(syscall.SIGKILL, 5*time.Second) }()

	if err := h.start(); err != nil {
		t.Fatal(err)
	}

	// Faults: one queued at a time (a burst queued during a restart would
	// all land on one request), plus a varying issuance delay.
	stopFaults := make(chan struct{})
	var faultsWG sync.WaitGroup
	var injected atomic.Int64
	faultsWG.Add(1)
	go func() {
		defer faultsWG.Done()
		for {
			select {
			case <-stopFaults:
				return
			case <-time.After(time.Duration(150+randIntN(250)) * time.Millisecond):
			}
			dbl.SetIssueDelay(time.Duration(100+randIntN(201)) * time.Millisecond)
			dbl.ClearFaults()
			switch p := randIntN(100); {
			case p < 25:
				dbl.FailNext(pcatest.OpIssueCertificate, 1, "ThrottlingException", 0)
			case p < 40:
				dbl.FailNext(pcatest.OpGetCertificate, 1, "ThrottlingException", 0)
			case p < 60:
				dbl.FailNext(pcatest.OpIssueCertificate, 1, "ServiceUnavailable", http.StatusServiceUnavailable)
			case p < 80:
				dbl.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, Drop: true})
			default:
				dbl.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, ErrorType: "InternalFailure"})
			}
			injected.Add(1)
		}
	}()

	res := &results{received: map[string]string{}, failed: map[string]int{}, retried: map[int]int{}, abort: make(chan struct{})}
	defer close(res.abort)
	stopNew := make(chan struct{})
	var workers sync.WaitGroup
	started := time.Now()
	var keysStarted atomic.Int64
	for w := range *flagWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := 0; ; i++ {
				select {
				case <-stopNew:
					return
				default:
				}
				key := fmt.Sprintf("chaos-%d-w%d-%d", seed%100000, w, i)
				body, _ := json.Marshal(map[string]any{"profile": "server", "common_name": fmt.Sprintf("w%d-%d.chaos.internal", w, i)})
				keysStarted.Add(1)
				// A key retried across a kill waits for reconciliation
				// (min_age), so its give-up time is generous.
				h.issueOne(res, key, body, time.Now().Add(90*time.Second))
			}
		}()
	}

	// Kills at random moments until both goals are met.
	for {
		if res.ok() >= *flagIssued && h.kills >= *flagKills {
			break
		}
		if time.Now().After(budget.Add(-60 * time.Second)) {
			close(stopNew)
			close(stopFaults)
			t.Fatalf("time budget: %d issuances, %d kills after %s (want %d, %d)", res.ok(), h.kills, time.Since(started).Round(time.Second), *flagIssued, *flagKills)
		}
		time.Sleep(time.Duration(1500+randIntN(3000)) * time.Millisecond)
		if h.kills < *flagKills || randIntN(2) == 0 {
			if err := h.stop(syscall.SIGKILL, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			h.kills++
			fmt.Fprintf(logf, "chaos: SIGKILL %d at %d issuances\n", h.kills, res.ok())
			time.Sleep(time.Duration(randIntN(500)) * time.Millisecond)
			if err := h.start(); err != nil {
				t.Fatal(err)
			}
			h.restarts++
		}
	}
	close(stopNew)
	workers.Wait()
	close(stopFaults)
	faultsWG.Wait()
	dbl.ClearFaults()
	dbl.SetIssueDelay(100 * time.Millisecond)
	driveEnd := time.Since(started)

	// Settle: reconciliation finishes every row a kill left pending.
	settleStart := time.Now()
	var pendingAPI int
	for {
		pendingAPI, err = h.pendingViaAPI()
		if err == nil && pendingAPI == 0 {
			break
		}
		if time.Now().After(budget) {
			t.Errorf("still %d rows pending (%v) %s after the load stopped", pendingAPI, err, time.Since(settleStart).Round(time.Second))
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	settled := time.Since(settleStart)
	if err := h.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Errorf("graceful stop at the end: %v", err)
	}

	// ---- checks, on the database itself ----
	st, err := store.Open(context.Background(), store.Options{Driver: driver, DSN: dsn, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rows []store.Certificate
	if err := st.DB().Omit("pem", "csr").Order("id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	bySerial := map[string]*store.Certificate{}
	byKey := map[string][]*store.Certificate{}
	status := map[string]int{}
	for i := range rows {
		r := &rows[i]
		status[r.Status]++
		if r.Serial != nil {
			bySerial[*r.Serial] = r
		}
		if r.IdempotencyKey != nil {
			byKey[*r.IdemRequester+"\x00"+*r.IdempotencyKey] = append(byKey[*r.IdemRequester+"\x00"+*r.IdempotencyKey], r)
		}
	}
	minted := dbl.IssuedCerts()
	var lost []string
	perToken := map[string]int{}
	for _, c := range minted {
		s := ca.FormatSerial(c.Cert.SerialNumber)
		if r := bySerial[s]; r == nil || (r.Status != store.StatusIssued && r.Status != store.StatusRevoked) {
			st := "no row"
			if r != nil {
				st = "row " + r.Status
			}
			lost = append(lost, fmt.Sprintf("%s (%s, token %s, %s)", s, c.Arn, c.IdempotencyToken, st))
		}
		perToken[c.IdempotencyToken]++
	}
	var unrecorded []string
	res.mu.Lock()
	for key, serial := range res.received {
		rs := byKey[auth.AdminName+"\x00"+key]
		if len(rs) != 1 || rs[0].Serial == nil || *rs[0].Serial != serial || rs[0].Status != store.StatusIssued {
			got := "no row"
			if len(rs) > 0 {
				got = fmt.Sprintf("%d rows, first %s %v", len(rs), rs[0].Status, rs[0].Serial)
			}
			unrecorded = append(unrecorded, fmt.Sprintf("%s → %s (%s)", key, serial, got))
		}
	}
	dups := append([]string(nil), res.dupKeys...)
	res.mu.Unlock()
	for k, rs := range byKey {
		if len(rs) > 1 {
			dups = append(dups, fmt.Sprintf("key %q has %d rows", k, len(rs)))
		}
	}
	for tok, n := range perToken {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("idempotency token %s minted %d certificates", tok, n))
		}
	}
	var phantom []string
	for s, r := range bySerial {
		if r.ARN == "" || r.Status == store.StatusFailed {
			continue
		}
		found := false
		for _, c := range minted {
			found = found || ca.FormatSerial(c.Cert.SerialNumber) == s
		}
		if !found {
			phantom = append(phantom, s)
		}
	}
	mismatch := 0
	for _, c := range dbl.Calls(pcatest.OpIssueCertificate) {
		if c.ReplayMismatch {
			mismatch++
		}
	}
	var reconciled int64
	st.DB().Model(&store.Event{}).Where("request_id = ?", "reconcile").Count(&reconciled)

	sort.Strings(lost)
	sort.Strings(unrecorded)
	sort.Strings(dups)
	res.mu.Lock()
	t.Logf("chaos %s: kills=%d restarts=%d issuances(client 201)=%d keys=%d attempts=%d transport_errors=%d retried=%v final_failures=%v abandoned=%d",
		driver, h.kills, h.restarts, len(res.received), keysStarted.Load(), res.attempts, res.transport, res.retried, res.failed, res.abandoned)
	res.mu.Unlock()
	t.Logf("chaos %s: pca minted=%d faults_injected=%d issue_calls=%d idempotent_replays=%d; rows=%v reconciled_events=%d; load %s, settle %s",
		driver, len(minted), injected.Load(), dbl.Count(pcatest.OpIssueCertificate), dbl.Stats().IdempotentReplays, status, reconciled,
		driveEnd.Round(time.Second), settled.Round(time.Second))
	t.Logf("chaos %s: RESULT lost=%d unrecorded=%d pending=%d duplicates=%d phantom=%d replay_mismatch=%d",
		driver, len(lost), len(unrecorded), status[store.StatusPending], len(dups), len(phantom), mismatch)
	fail := func(what string, list []string) {
		if len(list) > 0 {
			if len(list) > 20 {
				list = append(list[:20], "…")
			}
			t.Errorf("%s: %d\n  %s", what, len(list), strings.Join(list, "\n  "))
		}
	}
	fail("certificates PCA minted without an issued row (lost)", lost)
	fail("certificates a client received that are not recorded with that serial (unrecorded)", unrecorded)
	fail("keys or tokens with two certificates (duplicates)", dups)
	fail("issued rows PCA never minted (phantom)", phantom)
	if n := status[store.StatusPending]; n > 0 {
		t.Errorf("%d rows still pending after settling", n)
	}
	if mismatch > 0 {
		t.Errorf("%d IssueCertificate replays differed from the original request", mismatch)
	}
	if len(res.received) < *flagIssued {
		t.Errorf("%d successful issuances, want ≥ %d", len(res.received), *flagIssued)
	}
	if res.abandoned > 0 {
		t.Errorf("%d keys never reached a final answer within 90 s of retrying", res.abandoned)
	}
}

// freeAddr picks a loopback port for the server to keep across restarts, as
// clients of a real deployment keep one address.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pendingViaAPI counts pending rows through the running server.
func (h *harness) pendingViaAPI() (int, error) {
	addr, _ := h.addr.Load().(string)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/v1/certificates?status=pending&limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.client.Do(req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return -1, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var out struct {
		Certificates []json.RawMessage `json:"certificates"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return -1, err
	}
	return len(out.Certificates), nil
}
