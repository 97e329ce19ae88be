package pcatest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/acmpca"
	"github.com/aws/aws-sdk-go-v2/service/acmpca/types"
)

var ctx = context.Background()

func TestHierarchy(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	arnRE := regexp.MustCompile(`^arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	wantKey := map[string]string{RoleRoot: "RSA-2048", RoleClientCA: "P-256", RoleServerCA: "RSA-2048", RoleIstioCA: "P-384"}
	for _, role := range Roles {
		arn := srv.ARN(role)
		if !arnRE.MatchString(arn) {
			t.Errorf("%s ARN %q", role, arn)
		}
		if srv.Role(arn) != role {
			t.Errorf("Role(%s) = %q", arn, srv.Role(arn))
		}
		cert := srv.CACert(role)
		var key string
		switch k := cert.PublicKey.(type) {
		case *rsa.PublicKey:
			key = fmt.Sprintf("RSA-%d", k.N.BitLen())
		case *ecdsa.PublicKey:
			key = k.Curve.Params().Name
		}
		if key != wantKey[role] {
			t.Errorf("%s key %s, want %s", role, key, wantKey[role])
		}
		if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 || cert.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s: IsCA %v KU %v sig %v", role, cert.IsCA, cert.KeyUsage, cert.SignatureAlgorithm)
		}

		out, err := c.GetCertificateAuthorityCertificate(ctx, &acmpca.GetCertificateAuthorityCertificateInput{CertificateAuthorityArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		got := parsePEMs(t, aws.ToString(out.Certificate))
		if len(got) != 1 || !got[0].Equal(cert) {
			t.Errorf("%s: GetCertificateAuthorityCertificate returned another certificate", role)
		}
		if role == RoleRoot {
			if out.CertificateChain != nil {
				t.Errorf("root has a chain: %q", aws.ToString(out.CertificateChain))
			}
			continue
		}
		chain := parsePEMs(t, aws.ToString(out.CertificateChain))
		if len(chain) != 1 || !chain[0].Equal(srv.Root()) {
			t.Errorf("%s chain is not [root]", role)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: srv.RootPool()}); err != nil {
			t.Errorf("%s does not verify to the root: %v", role, err)
		}
		if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
			t.Errorf("%s pathlen %d", role, cert.MaxPathLen)
		}
	}
	if srv.ARN("nope") != "" || srv.CACert("nope") != nil {
		t.Error("unknown role answered")
	}
}

func TestTwoServersDoNotCrossVerify(t *testing.T) {
	a, b := newServer(t), newServer(t)
	if _, err := a.CACert(RoleClientCA).Verify(x509.VerifyOptions{Roots: b.RootPool()}); err == nil {
		t.Fatal("server A's CA verifies under server B's root")
	}
}

func TestDescribeCertificateAuthority(t *testing.T) {
	srv := newServer(t, WithCA(RoleIstioCA, CAConfig{UsageMode: UsageModeShortLived, CRL: &CRLConfig{Enabled: true, CustomCname: "crl.example.com", ExpirationInDays: 3}}))
	c := newClient(t, srv)
	want := map[string][3]string{
		RoleRoot:     {"ROOT", "RSA_2048", "SHA256WITHRSA"},
		RoleClientCA: {"SUBORDINATE", "EC_prime256v1", "SHA256WITHECDSA"},
		RoleServerCA: {"SUBORDINATE", "RSA_2048", "SHA256WITHRSA"},
		RoleIstioCA:  {"SUBORDINATE", "EC_secp384r1", "SHA384WITHECDSA"},
	}
	for _, role := range Roles {
		out, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(role))})
		if err != nil {
			t.Fatal(err)
		}
		ca := out.CertificateAuthority
		w := want[role]
		if aws.ToString(ca.Arn) != srv.ARN(role) || string(ca.Type) != w[0] || ca.Status != types.CertificateAuthorityStatusActive {
			t.Errorf("%s: %s %s %s", role, aws.ToString(ca.Arn), ca.Type, ca.Status)
		}
		cfg := ca.CertificateAuthorityConfiguration
		if string(cfg.KeyAlgorithm) != w[1] || string(cfg.SigningAlgorithm) != w[2] {
			t.Errorf("%s: %s %s", role, cfg.KeyAlgorithm, cfg.SigningAlgorithm)
		}
		if aws.ToString(cfg.Subject.CommonName) != srv.CACert(role).Subject.CommonName {
			t.Errorf("%s subject %q", role, aws.ToString(cfg.Subject.CommonName))
		}
		if !ca.NotAfter.Equal(srv.CACert(role).NotAfter) || !ca.NotBefore.Equal(srv.CACert(role).NotBefore) {
			t.Errorf("%s validity %v..%v", role, ca.NotBefore, ca.NotAfter)
		}
		crl := ca.RevocationConfiguration.CrlConfiguration
		wantMode := types.CertificateAuthorityUsageModeGeneralPurpose
		if role == RoleIstioCA {
			wantMode = types.CertificateAuthorityUsageModeShortLivedCertificate
			if aws.ToString(crl.CustomCname) != "crl.example.com" || aws.ToInt32(crl.ExpirationInDays) != 3 {
				t.Errorf("istio CRL %+v", crl)
			}
		} else if !aws.ToBool(crl.Enabled) || aws.ToString(crl.S3BucketName) == "" {
			t.Errorf("%s CRL %+v", role, crl)
		}
		if ca.UsageMode != wantMode {
			t.Errorf("%s usage mode %s", role, ca.UsageMode)
		}
		if id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); !ok || id == "" {
			t.Error("no request ID on success")
		}
	}

	srv.SetStatus(RoleClientCA, StatusDisabled)
	srv.SetUsageMode(RoleClientCA, UsageModeShortLived)
	out, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleClientCA))})
	if err != nil {
		t.Fatal(err)
	}
	if out.CertificateAuthority.Status != types.CertificateAuthorityStatusDisabled || out.CertificateAuthority.UsageMode != types.CertificateAuthorityUsageModeShortLivedCertificate {
		t.Errorf("after Set: %s %s", out.CertificateAuthority.Status, out.CertificateAuthority.UsageMode)
	}
}

func TestAccessDeniedOnDescribe(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.SetAccessDenied(OpDescribeCertificateAuthority, true)
	_, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))})
	wantCode(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), "acm-pca:DescribeCertificateAuthority") {
		t.Errorf("message lacks the action: %v", err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("not a 400 response error: %v", err)
	}
	// Issuance still works: only the one action is denied.
	issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)
	srv.SetAccessDenied(OpDescribeCertificateAuthority, false)
	if _, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))}); err != nil {
		t.Fatal(err)
	}
	if calls := srv.Calls(OpDescribeCertificateAuthority); len(calls) != 2 || calls[0].Err != "AccessDeniedException" || !calls[0].Injected || calls[1].Err != "" {
		t.Errorf("calls %+v", calls)
	}
}

func TestIssueAndGetEveryCA(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	certARN := regexp.MustCompile(`^(.+)/certificate/[0-9a-f]{32}$`)
	for _, role := range Roles {
		t.Run(role, func(t *testing.T) {
			leaf, chain, arn := issueAndGet(t, c, srv, role, simpleCSR(t), nil)
			if m := certARN.FindStringSubmatch(arn); m == nil || m[1] != srv.ARN(role) {
				t.Errorf("certificate ARN %q", arn)
			}
			if leaf.SignatureAlgorithm.String() != strings.ToUpper(map[string]string{
				RoleRoot: "SHA256-RSA", RoleServerCA: "SHA256-RSA", RoleClientCA: "ECDSA-SHA256", RoleIstioCA: "ECDSA-SHA384",
			}[role]) {
				t.Errorf("signed with %v", leaf.SignatureAlgorithm)
			}
			wantChain := []*x509.Certificate{srv.CACert(role)}
			if role != RoleRoot {
				wantChain = append(wantChain, srv.Root())
			}
			if len(chain) != len(wantChain) {
				t.Fatalf("chain has %d certificates, want %d", len(chain), len(wantChain))
			}
			for i := range chain {
				if !chain[i].Equal(wantChain[i]) {
					t.Errorf("chain[%d] is %s", i, chain[i].Subject)
				}
			}
			verifyChain(t, srv, leaf, chain, x509.ExtKeyUsageServerAuth)
			if leaf.SerialNumber.Sign() <= 0 || len(leaf.SerialNumber.Bytes()) != 16 {
				t.Errorf("serial %x", leaf.SerialNumber)
			}
			if len(leaf.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, srv.CACert(role).SubjectKeyId) {
				t.Error("SKI/AKI missing or wrong")
			}
			if len(leaf.CRLDistributionPoints) != 1 || !strings.Contains(leaf.CRLDistributionPoints[0], ".s3.us-east-1.amazonaws.com/crl/") {
				t.Errorf("CRL DP %v", leaf.CRLDistributionPoints)
			}
			ic, ok := srv.Certificate(arn)
			if !ok || !ic.Cert.Equal(leaf) || ic.Role != role {
				t.Error("Certificate(arn) disagrees")
			}
		})
	}
	if n := len(srv.Issued()); n != len(Roles) {
		t.Errorf("Issued() has %d, want %d", n, len(Roles))
	}
	if st := srv.Stats(); st.Issued != len(Roles) || st.Requests != 2*len(Roles) {
		t.Errorf("stats %+v", st)
	}
	call := srv.Calls(OpIssueCertificate)[0]
	if call.AccessKeyID != "AKIDTEST" || call.CAArn != srv.ARN(RoleRoot) || call.SigningAlgorithm != "SHA256WITHRSA" ||
		call.ValidityType != "DAYS" || call.ValidityValue != 7 || call.Status != 200 || call.CertificateArn == "" || call.Serial == "" {
		t.Errorf("call %+v", call)
	}
}

func ekuOID(oid asn1.ObjectIdentifier) pkix.Extension {
	v, _ := asn1.Marshal([]asn1.ObjectIdentifier{oid})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: v}
}

func kuDigitalSignature() pkix.Extension {
	v, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: v}
}

var (
	oidServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidCodeSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	oidCustom      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
)

func hasExt(c *x509.Certificate, oid asn1.ObjectIdentifier) (found, critical bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true, e.Critical
		}
	}
	return false, false
}

func TestTemplates(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const (
		DS = x509.KeyUsageDigitalSignature
		KE = x509.KeyUsageKeyEncipherment
		KA = x509.KeyUsageKeyAgreement
		CS = x509.KeyUsageCertSign
		CR = x509.KeyUsageCRLSign
	)
	srvA, cliA := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
	csrWithUsages := makeCSR(t, csrOpts{
		subject: pkix.Name{CommonName: "csr"}, dns: []string{"csr.example"},
		exts: []pkix.Extension{kuDigitalSignature(), ekuOID(oidCodeSigning), {Id: oidCustom, Value: []byte{0x05, 0x00}}},
	})
	apiUsages := &types.ApiPassthrough{Extensions: &types.Extensions{
		KeyUsage:         &types.KeyUsage{DigitalSignature: true, KeyAgreement: true},
		ExtendedKeyUsage: []types.ExtendedKeyUsage{{ExtendedKeyUsageType: types.ExtendedKeyUsageTypeClientAuth}},
	}}
	caUsages := &types.ApiPassthrough{Extensions: &types.Extensions{
		KeyUsage: &types.KeyUsage{DigitalSignature: true, KeyCertSign: true, CRLSign: true},
	}}
	cases := []struct {
		template string
		role     string
		csr      []byte
		api      *types.ApiPassthrough
		ku       x509.KeyUsage
		eku      []x509.ExtKeyUsage
		ca       bool
		pathLen  int
		custom   bool // the CSR's custom extension passed through
	}{
		{template: "EndEntityCertificate", ku: DS | KE, eku: []x509.ExtKeyUsage{srvA, cliA}},
		{template: "EndEntityClientAuthCertificate", ku: DS | KE, eku: []x509.ExtKeyUsage{cliA}},
		{template: "EndEntityServerAuthCertificate", ku: DS | KE, eku: []x509.ExtKeyUsage{srvA}},
		{template: "EndEntityCertificate", csr: csrWithUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{srvA, cliA}},
		{template: "EndEntityCertificate_CSRPassthrough", csr: csrWithUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{srvA, cliA}, custom: true},
		{template: "EndEntityClientAuthCertificate_APIPassthrough", api: apiUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{cliA}},
		{template: "EndEntityServerAuthCertificate_APIPassthrough", api: apiUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{srvA}},
		{template: "EndEntityServerAuthCertificate_APICSRPassthrough", csr: csrWithUsages, api: apiUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{srvA}, custom: true},
		{template: "EndEntityClientAuthCertificate_CSRPassthrough", csr: csrWithUsages, ku: DS | KE, eku: []x509.ExtKeyUsage{cliA}, custom: true},
		{template: "BlankEndEntityCertificate_APIPassthrough", api: apiUsages, ku: DS | KA, eku: []x509.ExtKeyUsage{cliA}},
		{template: "BlankEndEntityCertificate_APIPassthrough"},
		{template: "BlankEndEntityCertificate_APIPassthrough", csr: csrWithUsages},
		{template: "BlankEndEntityCertificate_CSRPassthrough", csr: csrWithUsages, api: apiUsages, ku: DS, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, custom: true},
		{template: "BlankEndEntityCertificate_APICSRPassthrough", csr: csrWithUsages, api: apiUsages, ku: DS | KA, eku: []x509.ExtKeyUsage{cliA}, custom: true},
		{template: "SubordinateCACertificate_PathLen0", role: RoleRoot, ku: DS | CS | CR, ca: true, pathLen: 0},
		{template: "SubordinateCACertificate_PathLen1", role: RoleRoot, ku: DS | CS | CR, ca: true, pathLen: 1},
		{template: "SubordinateCACertificate_PathLen2", role: RoleRoot, ku: DS | CS | CR, ca: true, pathLen: 2},
		{template: "SubordinateCACertificate_PathLen3", role: RoleRoot, ku: DS | CS | CR, ca: true, pathLen: 3},
		{template: "SubordinateCACertificate_PathLen0_APIPassthrough", role: RoleRoot, api: apiUsages, ku: DS | CS | CR, ca: true, pathLen: 0},
		{template: "BlankSubordinateCACertificate_PathLen0_APIPassthrough", role: RoleRoot, api: caUsages, ku: DS | CS | CR, ca: true, pathLen: 0},
		{template: "BlankSubordinateCACertificate_PathLen0_APICSRPassthrough", role: RoleRoot, api: caUsages, ku: DS | CS | CR, ca: true, pathLen: 0},
	}
	for _, tc := range cases {
		name := tc.template
		if tc.api != nil {
			name += "+api"
		}
		if tc.csr != nil {
			name += "+csr"
		}
		t.Run(name, func(t *testing.T) {
			role := tc.role
			if role == "" {
				role = RoleServerCA
			}
			csr := tc.csr
			if csr == nil {
				csr = simpleCSR(t)
			}
			leaf, chain, _ := issueAndGet(t, c, srv, role, csr, func(in *acmpca.IssueCertificateInput) {
				in.TemplateArn = aws.String(TemplateARN(tc.template))
				in.ApiPassthrough = tc.api
			})
			if leaf.KeyUsage != tc.ku {
				t.Errorf("KU %b, want %b", leaf.KeyUsage, tc.ku)
			}
			if found, critical := hasExt(leaf, oidKU); found != (tc.ku != 0) || (found && !critical) {
				t.Errorf("KU extension present %v critical %v", found, critical)
			}
			if fmt.Sprint(leaf.ExtKeyUsage) != fmt.Sprint(tc.eku) {
				t.Errorf("EKU %v, want %v", leaf.ExtKeyUsage, tc.eku)
			}
			if found, _ := hasExt(leaf, oidCustom); found != tc.custom {
				t.Errorf("custom CSR extension present %v, want %v", found, tc.custom)
			}
			if !leaf.BasicConstraintsValid || leaf.IsCA != tc.ca {
				t.Errorf("basic constraints valid %v CA %v", leaf.BasicConstraintsValid, leaf.IsCA)
			}
			if tc.ca {
				if leaf.MaxPathLen != tc.pathLen || (tc.pathLen == 0 && !leaf.MaxPathLenZero) {
					t.Errorf("pathlen %d zero %v, want %d", leaf.MaxPathLen, leaf.MaxPathLenZero, tc.pathLen)
				}
				if len(leaf.DNSNames) != 0 && !strings.Contains(tc.template, "Passthrough") {
					t.Errorf("CA template copied SANs %v", leaf.DNSNames)
				}
			} else if len(leaf.DNSNames) == 0 {
				t.Error("end-entity certificate lost the CSR's SANs")
			}
			inter := x509.NewCertPool()
			for _, c := range chain {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: srv.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	srv := newServer(t, WithCA(RoleServerCA, CAConfig{UsageMode: UsageModeShortLived}))
	c := newClient(t, srv)
	for _, tc := range []struct {
		role, template, code string
	}{
		{RoleClientCA, "NoSuchTemplate", "InvalidArgsException"},
		{RoleClientCA, "BlankEndEntityCertificate", "InvalidArgsException"},
		{RoleClientCA, "SubordinateCACertificate_PathLen4", "InvalidArgsException"},
		{RoleClientCA, "SubordinateCACertificate_PathLen0", "InvalidArgsException"}, // client-ca has pathlen 0
		{RoleServerCA, "SubordinateCACertificate_PathLen0", "InvalidArgsException"}, // short-lived
	} {
		in := issueInput(srv, tc.role, simpleCSR(t))
		in.TemplateArn = aws.String(TemplateARN(tc.template))
		wantCode(t, issueErr(t, c, in), tc.code)
	}
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.TemplateArn = aws.String("arn:aws-us-gov:acm-pca:::template/EndEntityCertificate/V1")
	wantCode(t, issueErr(t, c, in), "InvalidArgsException")
	in.TemplateArn = aws.String("template/EndEntityCertificate")
	wantCode(t, issueErr(t, c, in), "InvalidArnException")
	if n := len(srv.Issued()); n != 0 {
		t.Fatalf("%d certificates minted by failed calls", n)
	}
}

func TestAPIPassthroughSubjectAndSANs(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	csr := makeCSR(t, csrOpts{subject: pkix.Name{CommonName: "from-csr"}, dns: []string{"csr.example"}})
	api := &types.ApiPassthrough{
		Subject: &types.ASN1Subject{CommonName: aws.String("from-api"), Organization: aws.String("Acme"), Country: aws.String("DE")},
		Extensions: &types.Extensions{
			KeyUsage:         &types.KeyUsage{DigitalSignature: true},
			ExtendedKeyUsage: []types.ExtendedKeyUsage{{ExtendedKeyUsageType: types.ExtendedKeyUsageTypeServerAuth}, {ExtendedKeyUsageObjectIdentifier: aws.String("1.3.6.1.4.1.99999.2")}},
			SubjectAlternativeNames: []types.GeneralName{
				{DnsName: aws.String("api.example")},
				{IpAddress: aws.String("10.1.2.3")},
				{IpAddress: aws.String("::1")},
				{UniformResourceIdentifier: aws.String("spiffe://cluster.local/ns/a/sa/b")},
				{Rfc822Name: aws.String("ops@example.com")},
			},
		},
	}
	leaf, _, _ := issueAndGet(t, c, srv, RoleClientCA, csr, func(in *acmpca.IssueCertificateInput) {
		in.TemplateArn = aws.String(TemplateARN("BlankEndEntityCertificate_APIPassthrough"))
		in.ApiPassthrough = api
	})
	if leaf.Subject.CommonName != "from-api" || fmt.Sprint(leaf.Subject.Organization) != "[Acme]" || fmt.Sprint(leaf.Subject.Country) != "[DE]" {
		t.Errorf("subject %s", leaf.Subject)
	}
	if fmt.Sprint(leaf.DNSNames) != "[api.example]" || len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) ||
		!leaf.IPAddresses[1].Equal(net.IPv6loopback) || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/a/sa/b" ||
		fmt.Sprint(leaf.EmailAddresses) != "[ops@example.com]" {
		t.Errorf("SANs %v %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	}
	if fmt.Sprint(leaf.ExtKeyUsage) != fmt.Sprint([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(leaf.UnknownExtKeyUsage) != 1 {
		t.Errorf("EKU %v %v", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage)
	}

	// Without an API template the ApiPassthrough is ignored.
	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, csr, func(in *acmpca.IssueCertificateInput) { in.ApiPassthrough = api })
	if leaf.Subject.CommonName != "from-csr" || fmt.Sprint(leaf.DNSNames) != "[csr.example]" || len(leaf.IPAddresses) != 0 {
		t.Errorf("non-API template used ApiPassthrough: %s %v", leaf.Subject, leaf.DNSNames)
	}

	// An API template without API SANs falls back to the CSR's ("from API or CSR").
	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, csr, func(in *acmpca.IssueCertificateInput) {
		in.TemplateArn = aws.String(TemplateARN("EndEntityCertificate_APIPassthrough"))
	})
	if fmt.Sprint(leaf.DNSNames) != "[csr.example]" || leaf.Subject.CommonName != "from-csr" {
		t.Errorf("fallback to CSR: %s %v", leaf.Subject, leaf.DNSNames)
	}

	// A subject-less CSR is fine when the SANs say who it is.
	bare := makeCSR(t, csrOpts{uris: []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/w"}}})
	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, bare, nil)
	if len(leaf.URIs) != 1 || len(leaf.Subject.ToRDNSequence()) != 0 {
		t.Errorf("bare CSR: %s %v", leaf.Subject, leaf.URIs)
	}
	if _, crit := hasExt(leaf, oidSAN); !crit {
		t.Error("SAN must be critical when the subject is empty")
	}

	for i, bad := range [][]types.GeneralName{
		{{DnsName: aws.String("a"), IpAddress: aws.String("1.2.3.4")}},
		{{}},
		{{IpAddress: aws.String("not-an-ip")}},
		{{UniformResourceIdentifier: aws.String("no scheme")}},
	} {
		in := issueInput(srv, RoleClientCA, csr)
		in.TemplateArn = aws.String(TemplateARN("BlankEndEntityCertificate_APIPassthrough"))
		in.ApiPassthrough = &types.ApiPassthrough{Extensions: &types.Extensions{SubjectAlternativeNames: bad}}
		err := issueErr(t, c, in)
		if errorCode(err) != "InvalidArgsException" {
			t.Errorf("case %d: %v", i, err)
		}
	}
	none := makeCSR(t, csrOpts{})
	wantCode(t, issueErr(t, c, issueInput(srv, RoleClientCA, none)), "MalformedCSRException")
}

func TestMalformedCSR(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	good := simpleCSR(t)
	tampered := bytes.Clone(good)
	// Flip a bit inside the base64 body near the end, where the signature is.
	i := bytes.LastIndex(tampered, []byte("-----END")) - 10
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, csr := range map[string][]byte{
		"garbage":   []byte("hello"),
		"der":       bytes.TrimSpace(good[10:40]),
		"signature": tampered,
		"rsa1024":   makeCSR(t, csrOpts{subject: pkix.Name{CommonName: "x"}, key: rsa1024}),
		"p224":      makeCSR(t, csrOpts{subject: pkix.Name{CommonName: "x"}, key: p224}),
	} {
		err := issueErr(t, c, issueInput(srv, RoleClientCA, csr))
		var mal *types.MalformedCSRException
		if !errors.As(err, &mal) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestArnAndStateErrors(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.CertificateAuthorityArn = aws.String("not-an-arn")
	var badArn *types.InvalidArnException
	if err := issueErr(t, c, in); !errors.As(err, &badArn) {
		t.Errorf("bad ARN: %v", err)
	}
	in.CertificateAuthorityArn = aws.String("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/00000000-0000-4000-8000-000000000000")
	var nf *types.ResourceNotFoundException
	if err := issueErr(t, c, in); !errors.As(err, &nf) {
		t.Errorf("unknown CA: %v", err)
	}
	srv.SetStatus(RoleClientCA, StatusDisabled)
	var st *types.InvalidStateException
	if err := issueErr(t, c, issueInput(srv, RoleClientCA, simpleCSR(t))); !errors.As(err, &st) {
		t.Errorf("disabled CA: %v", err)
	}
	srv.SetStatus(RoleClientCA, StatusActive)
	issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)

	_, err := c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleClientCA)), CertificateArn: aws.String("bogus")})
	wantCode(t, err, "InvalidArnException")
	_, err = c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleClientCA)), CertificateArn: aws.String(srv.ARN(RoleClientCA) + "/certificate/0123456789abcdef0123456789abcdef")})
	wantCode(t, err, "ResourceNotFoundException")
	// A certificate asked for under the wrong CA is not found there.
	_, _, arn := issueAndGet(t, c, srv, RoleServerCA, simpleCSR(t), nil)
	_, err = c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleClientCA)), CertificateArn: aws.String(arn)})
	wantCode(t, err, "ResourceNotFoundException")
}

func TestSigningAlgorithm(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	for role, bad := range map[string]types.SigningAlgorithm{
		RoleClientCA: types.SigningAlgorithmSha256withrsa,
		RoleServerCA: types.SigningAlgorithmSha256withecdsa,
		RoleIstioCA:  "MD5WITHRSA",
	} {
		in := issueInput(srv, role, simpleCSR(t))
		in.SigningAlgorithm = bad
		var ia *types.InvalidArgsException
		if err := issueErr(t, c, in); !errors.As(err, &ia) {
			t.Errorf("%s with %s: %v", role, bad, err)
		}
	}
	for alg, want := range map[types.SigningAlgorithm]x509.SignatureAlgorithm{
		types.SigningAlgorithmSha384withecdsa: x509.ECDSAWithSHA384,
		types.SigningAlgorithmSha512withecdsa: x509.ECDSAWithSHA512,
	} {
		leaf, _, _ := issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), func(in *acmpca.IssueCertificateInput) { in.SigningAlgorithm = alg })
		if leaf.SignatureAlgorithm != want {
			t.Errorf("%s: signed with %v", alg, leaf.SignatureAlgorithm)
		}
	}
	leaf, _, _ := issueAndGet(t, c, srv, RoleServerCA, simpleCSR(t), func(in *acmpca.IssueCertificateInput) { in.SigningAlgorithm = types.SigningAlgorithmSha256withrsaPss })
	if leaf.SignatureAlgorithm != x509.SHA256WithRSAPSS {
		t.Errorf("PSS: %v", leaf.SignatureAlgorithm)
	}
}

func TestValidity(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	now := time.Now().Truncate(time.Second)

	leaf, _, _ := issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)
	if d := leaf.NotBefore.Sub(now.Add(-time.Hour)); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("default NotBefore %v, want about now-60m", leaf.NotBefore)
	}
	if d := leaf.NotAfter.Sub(now.Add(7 * 24 * time.Hour)); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("DAYS 7 NotAfter %v", leaf.NotAfter)
	}

	nb, na := now.Add(-5*time.Minute), now.Add(7*24*time.Hour-5*time.Minute)
	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), func(in *acmpca.IssueCertificateInput) {
		in.Validity = &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(na.Unix())}
		in.ValidityNotBefore = &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(nb.Unix())}
	})
	if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Errorf("ABSOLUTE: %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, nb, na)
	}

	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), func(in *acmpca.IssueCertificateInput) {
		in.Validity = &types.Validity{Type: types.ValidityPeriodTypeEndDate, Value: aws.Int64(301231235959)}
	})
	if want := time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC); !leaf.NotAfter.Equal(want) {
		t.Errorf("END_DATE: %v", leaf.NotAfter)
	}
	leaf, _, _ = issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), func(in *acmpca.IssueCertificateInput) {
		in.Validity = &types.Validity{Type: types.ValidityPeriodTypeMonths, Value: aws.Int64(1)}
	})
	if leaf.NotAfter.Before(now.AddDate(0, 1, 0).Add(-2*time.Second)) || leaf.NotAfter.After(now.AddDate(0, 1, 0).Add(2*time.Second)) {
		t.Errorf("MONTHS: %v", leaf.NotAfter)
	}

	for name, mod := range map[string]func(*acmpca.IssueCertificateInput){
		"past": func(in *acmpca.IssueCertificateInput) {
			in.Validity = &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(now.Add(-time.Hour).Unix())}
		},
		"beyond CA": func(in *acmpca.IssueCertificateInput) {
			in.Validity = &types.Validity{Type: types.ValidityPeriodTypeYears, Value: aws.Int64(20)}
		},
		"notBefore not ABSOLUTE": func(in *acmpca.IssueCertificateInput) {
			in.ValidityNotBefore = &types.Validity{Type: types.ValidityPeriodTypeDays, Value: aws.Int64(1)}
		},
		"bad END_DATE": func(in *acmpca.IssueCertificateInput) {
			in.Validity = &types.Validity{Type: types.ValidityPeriodTypeEndDate, Value: aws.Int64(12345)}
		},
	} {
		in := issueInput(srv, RoleClientCA, simpleCSR(t))
		mod(in)
		if err := issueErr(t, c, in); errorCode(err) != "InvalidArgsException" {
			t.Errorf("%s: %v", name, err)
		}
	}
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.Validity.Value = aws.Int64(0)
	wantCode(t, issueErr(t, c, in), "ValidationException")
}

func TestShortLivedCA(t *testing.T) {
	srv := newServer(t, WithCA(RoleClientCA, CAConfig{UsageMode: UsageModeShortLived}))
	c := newClient(t, srv)
	issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil) // DAYS 7: counted from issuance

	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.Validity.Value = aws.Int64(8)
	wantCode(t, issueErr(t, c, in), "InvalidArgsException")

	// Explicit backdating counts: 7 days after a NotBefore an hour ago... plus an hour.
	now := time.Now()
	in = issueInput(srv, RoleClientCA, simpleCSR(t))
	in.ValidityNotBefore = &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(now.Add(-time.Hour).Unix())}
	in.Validity = &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(now.Add(7 * 24 * time.Hour).Unix())}
	wantCode(t, issueErr(t, c, in), "InvalidArgsException")
	in.Validity.Value = aws.Int64(now.Add(7*24*time.Hour - time.Hour).Unix())
	if _, err := c.IssueCertificate(ctx, in); err != nil {
		t.Fatal(err)
	}
}

func TestCAValidityOptions(t *testing.T) {
	now := time.Now()
	srv := newServer(t,
		WithCA(RoleClientCA, CAConfig{NotAfter: now.Add(10 * 24 * time.Hour)}),
		WithCA(RoleServerCA, CAConfig{NotBefore: now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(-time.Hour)}),
	)
	c := newClient(t, srv)
	if d := srv.CACert(RoleClientCA).NotAfter.Sub(now.Add(10 * 24 * time.Hour)); d < -time.Second || d > time.Second {
		t.Errorf("client-ca NotAfter %v", srv.CACert(RoleClientCA).NotAfter)
	}
	issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.Validity.Value = aws.Int64(11)
	wantCode(t, issueErr(t, c, in), "InvalidArgsException")

	out, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleServerCA))})
	if err != nil {
		t.Fatal(err)
	}
	if out.CertificateAuthority.Status != types.CertificateAuthorityStatusExpired {
		t.Errorf("expired CA status %s", out.CertificateAuthority.Status)
	}
	wantCode(t, issueErr(t, c, issueInput(srv, RoleServerCA, simpleCSR(t))), "InvalidStateException")
}

func TestIdempotency(t *testing.T) {
	clock, advance := fixedClock(time.Now())
	srv := newServer(t, WithClock(clock))
	c := newClient(t, srv)
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.IdempotencyToken = aws.String("tok-1")
	first, err := c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.CertificateArn) != aws.ToString(second.CertificateArn) {
		t.Fatalf("same token gave %s and %s", aws.ToString(first.CertificateArn), aws.ToString(second.CertificateArn))
	}
	if n := len(srv.Issued()); n != 1 {
		t.Fatalf("%d certificates minted, want 1", n)
	}
	if ic := srv.IssuedCerts(); ic[0].IdempotencyToken != "tok-1" || ic[0].Arn != aws.ToString(first.CertificateArn) {
		t.Errorf("IssuedCerts %+v", ic[0])
	}
	calls := srv.Calls(OpIssueCertificate)
	if len(calls) != 2 || calls[0].Replayed || !calls[1].Replayed || calls[1].ReplayMismatch || calls[1].CertificateArn != calls[0].CertificateArn {
		t.Errorf("calls %+v", calls)
	}
	if st := srv.Stats(); st.IdempotentReplays != 1 || st.Issued != 1 {
		t.Errorf("stats %+v", st)
	}

	// Same token, different CSR: PCA still answers with the first certificate.
	other := *in
	other.Csr = makeCSR(t, csrOpts{subject: pkix.Name{CommonName: "other"}})
	third, err := c.IssueCertificate(ctx, &other)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(third.CertificateArn) != aws.ToString(first.CertificateArn) || !srv.Calls(OpIssueCertificate)[2].ReplayMismatch {
		t.Error("a mismatching replay is not flagged")
	}

	// The token is scoped to the CA.
	onServer := issueInput(srv, RoleServerCA, simpleCSR(t))
	onServer.IdempotencyToken = aws.String("tok-1")
	out, err := c.IssueCertificate(ctx, onServer)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.CertificateArn) == aws.ToString(first.CertificateArn) {
		t.Error("token shared across CAs")
	}

	// After the window a new certificate is issued.
	advance(IdempotencyWindow + time.Second)
	later, err := c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(later.CertificateArn) == aws.ToString(first.CertificateArn) {
		t.Error("token remembered past the window")
	}

	in.IdempotencyToken = aws.String(strings.Repeat("x", 37))
	wantCode(t, issueErr(t, c, in), "ValidationException")
}

// The response to a successful issuance is lost; the SDK's own retry
// (same input, same token) must get the same certificate.
func TestIdempotencyAcrossLostResponse(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(o *acmpca.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	})
	srv.InjectNext(OpIssueCertificate, 1, Fault{ErrorType: "InternalFailure", AfterProcessing: true})
	srv.InjectNext(OpIssueCertificate, 1, Fault{Drop: true, AfterProcessing: true})
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	in.IdempotencyToken = aws.String("lost-response")
	out, err := c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Issued()); n != 1 {
		t.Fatalf("%d certificates minted across retries, want 1", n)
	}
	if srv.IssuedCerts()[0].Arn != aws.ToString(out.CertificateArn) {
		t.Error("retry returned another ARN")
	}
	calls := srv.Calls(OpIssueCertificate)
	if len(calls) != 3 || calls[0].Err != "InternalFailure" || calls[1].Status != 0 || !calls[2].Replayed {
		t.Errorf("calls %+v", calls)
	}

	// Without a token every attempt mints: the duplicate the token prevents.
	srv.InjectNext(OpIssueCertificate, 1, Fault{ErrorType: "InternalFailure", AfterProcessing: true})
	if _, err := c.IssueCertificate(ctx, issueInput(srv, RoleClientCA, simpleCSR(t))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Issued()); n != 3 {
		t.Fatalf("%d certificates, want 3", n)
	}
}

func TestConcurrentSameToken(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	in := issueInput(srv, RoleServerCA, simpleCSR(t))
	in.IdempotencyToken = aws.String("concurrent")
	var wg sync.WaitGroup
	arns := make([]string, 16)
	for i := range arns {
		wg.Go(func() {
			out, err := c.IssueCertificate(ctx, in)
			if err != nil {
				t.Error(err)
				return
			}
			arns[i] = aws.ToString(out.CertificateArn)
		})
	}
	wg.Wait()
	for _, a := range arns {
		if a != arns[0] {
			t.Fatalf("ARNs differ: %v", arns)
		}
	}
	if n := len(srv.Issued()); n != 1 {
		t.Fatalf("%d minted", n)
	}
}

func TestAsyncIssuance(t *testing.T) {
	srv := newServer(t, WithIssueDelay(150*time.Millisecond))
	c := newClient(t, srv)
	in := issueInput(srv, RoleClientCA, simpleCSR(t))
	out, err := c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	get := &acmpca.GetCertificateInput{CertificateAuthorityArn: in.CertificateAuthorityArn, CertificateArn: out.CertificateArn}
	_, err = c.GetCertificate(ctx, get)
	var inProgress *types.RequestInProgressException
	if !errors.As(err, &inProgress) {
		t.Fatalf("want RequestInProgressException, got %v", err)
	}
	if len(srv.Issued()) != 1 {
		t.Error("the certificate is minted at IssueCertificate time")
	}
	time.Sleep(200 * time.Millisecond)
	got, err := c.GetCertificate(ctx, get)
	if err != nil {
		t.Fatal(err)
	}
	if !parsePEMs(t, aws.ToString(got.Certificate))[0].Equal(srv.Issued()[0]) {
		t.Error("GetCertificate returned another certificate")
	}

	srv.SetIssueDelay(0)
	issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)

	srv.FailIssuanceNext(1, "")
	out, err = c.IssueCertificate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: in.CertificateAuthorityArn, CertificateArn: out.CertificateArn})
	var failed *types.RequestFailedException
	if !errors.As(err, &failed) {
		t.Fatalf("want RequestFailedException, got %v", err)
	}
	if len(srv.Issued()) != 2 {
		t.Error("a failed issuance minted a certificate")
	}
}

func TestThrottling(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.SetQuota(OpIssueCertificate, 1, 2)
	var throttled int
	for range 5 {
		_, err := c.IssueCertificate(ctx, issueInput(srv, RoleClientCA, simpleCSR(t)))
		if err != nil {
			wantCode(t, err, "ThrottlingException")
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != 400 || re.ServiceRequestID() == "" {
				t.Errorf("throttle response: %v", err)
			}
			throttled++
		}
	}
	if throttled != 3 || srv.Stats().Throttled != 3 || len(srv.Issued()) != 2 {
		t.Errorf("throttled %d, stats %+v, issued %d", throttled, srv.Stats(), len(srv.Issued()))
	}
	// Other operations are not limited by IssueCertificate's quota.
	if _, err := c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))}); err != nil {
		t.Fatal(err)
	}
	srv.SetQuota(OpIssueCertificate, 0, 0)
	if _, err := c.IssueCertificate(ctx, issueInput(srv, RoleClientCA, simpleCSR(t))); err != nil {
		t.Fatal(err)
	}
}

func TestScriptedErrors(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.FailNext(OpGetCertificateAuthorityCertificate, 2, "InternalFailure", 500)
	srv.FailNext(OpGetCertificateAuthorityCertificate, 1, "ServiceUnavailable", 0)
	srv.FailNext(OpAny, 1, "LimitExceededException", 0)
	in := &acmpca.GetCertificateAuthorityCertificateInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))}
	for i, want := range []int{500, 500, 503} {
		_, err := c.GetCertificateAuthorityCertificate(ctx, in)
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != want {
			t.Fatalf("attempt %d: %v, want HTTP %d", i, err, want)
		}
		if re.ServiceRequestID() == "" || re.ServiceRequestID() != srv.Calls(OpGetCertificateAuthorityCertificate)[i].RequestID {
			t.Errorf("request ID %q does not match the log", re.ServiceRequestID())
		}
	}
	// OpAny faults apply after the operation's own queue is empty.
	_, err := c.GetCertificateAuthorityCertificate(ctx, in)
	var le *types.LimitExceededException
	if !errors.As(err, &le) {
		t.Fatalf("want typed LimitExceededException, got %v", err)
	}
	if _, err := c.GetCertificateAuthorityCertificate(ctx, in); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.InjectedFaults != 4 {
		t.Errorf("stats %+v", st)
	}

	srv.DropNext(OpDescribeCertificateAuthority, 1)
	_, err = c.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))})
	if err == nil || errorCode(err) != "" {
		t.Fatalf("dropped connection: %v", err)
	}
	if !retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool() {
		t.Errorf("a dropped connection should be retryable for the SDK: %v", err)
	}
}

func TestDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	in := &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))}

	srv.SetDown(DownUnavailable)
	_, err := c.DescribeCertificateAuthority(ctx, in)
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
		t.Fatalf("DownUnavailable: %v", err)
	}

	srv.SetDown(DownReset)
	// A send failure still arrives wrapped in a ResponseError, with no status.
	if _, err = c.DescribeCertificateAuthority(ctx, in); err == nil || !errors.As(err, &re) || re.HTTPStatusCode() != 0 {
		t.Fatalf("DownReset: %v", err)
	}

	srv.SetDown(DownHang)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err = c.DescribeCertificateAuthority(tctx, in); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DownHang: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("hang did not honour the client's deadline")
	}

	srv.SetDown(Up)
	if _, err := c.DescribeCertificateAuthority(ctx, in); err != nil {
		t.Fatal(err)
	}
}

func TestLatency(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.SetLatency(OpGetCertificateAuthorityCertificate, 100*time.Millisecond)
	start := time.Now()
	if _, err := c.GetCertificateAuthorityCertificate(ctx, &acmpca.GetCertificateAuthorityCertificateInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("latency %v", d)
	}
	srv.SetLatency(OpGetCertificateAuthorityCertificate, 0)
}

func TestRevoke(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	leaf, _, arn := issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)
	serial := strings.ToUpper(ColonHex(leaf.SerialNumber))
	revoke := func(role, serial, reason string) error {
		_, err := c.RevokeCertificate(ctx, &acmpca.RevokeCertificateInput{
			CertificateAuthorityArn: aws.String(srv.ARN(role)),
			CertificateSerial:       aws.String(serial),
			RevocationReason:        types.RevocationReason(reason),
		})
		return err
	}
	if err := revoke(RoleClientCA, serial, "KEY_COMPROMISE"); err != nil {
		t.Fatal(err)
	}
	rv := srv.Revoked()
	if len(rv) != 1 || rv[0].RawSerial != serial || rv[0].Serial.Cmp(leaf.SerialNumber) != 0 || rv[0].Reason != "KEY_COMPROMISE" || rv[0].CertificateArn != arn || !srv.IsRevoked(leaf.SerialNumber) {
		t.Errorf("Revoked %+v", rv)
	}
	if got := srv.Calls(OpRevokeCertificate)[0]; got.Serial != serial || got.Reason != "KEY_COMPROMISE" {
		t.Errorf("call %+v", got)
	}
	var done *types.RequestAlreadyProcessedException
	if err := revoke(RoleClientCA, ColonHex(leaf.SerialNumber), "SUPERSEDED"); !errors.As(err, &done) {
		t.Errorf("second revoke: %v", err)
	}
	var nf *types.ResourceNotFoundException
	if err := revoke(RoleServerCA, serial, "SUPERSEDED"); !errors.As(err, &nf) {
		t.Errorf("revoke at the wrong CA: %v", err)
	}
	var ir *types.InvalidRequestException
	if err := revoke(RoleClientCA, serial, "BECAUSE"); !errors.As(err, &ir) {
		t.Errorf("bad reason: %v", err)
	}
	if err := revoke(RoleClientCA, "zz:11", "SUPERSEDED"); !errors.As(err, &ir) {
		t.Errorf("bad serial: %v", err)
	}
	if err := revoke(RoleRoot, ColonHex(srv.Root().SerialNumber), "SUPERSEDED"); !errors.As(err, &ir) {
		t.Errorf("root revoking itself: %v", err)
	}
	// The root can revoke a subordinate it issued.
	if err := revoke(RoleRoot, ColonHex(srv.CACert(RoleIstioCA).SerialNumber), "CESSATION_OF_OPERATION"); err != nil {
		t.Errorf("revoke a subordinate: %v", err)
	}
	if srv.Stats().Revoked != 2 {
		t.Errorf("stats %+v", srv.Stats())
	}
}

func TestUnknownOperationAndAuth(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	_, err := c.ListCertificateAuthorities(ctx, &acmpca.ListCertificateAuthoritiesInput{})
	wantCode(t, err, "UnknownOperationException")

	wrong := acmpca.NewFromConfig(aws.Config{Region: "eu-west-1", Credentials: c.Options().Credentials}, func(o *acmpca.Options) {
		o.BaseEndpoint = aws.String(srv.URL())
		o.Retryer = aws.NopRetryer{}
	})
	_, err = wrong.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(srv.ARN(RoleRoot))})
	wantCode(t, err, "InvalidSignatureException")

	resp, err := http.Post(srv.URL(), "application/x-amz-json-1.1", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-RequestId") == "" {
		t.Errorf("unsigned request: %d", resp.StatusCode)
	}
}

func TestCertificateRewrite(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.SetCertificateRewrite(func(cert, chain string) (string, string) {
		parts := strings.SplitAfter(chain, "-----END CERTIFICATE-----")
		return cert, strings.TrimSpace(parts[1]) + "\n" + parts[0]
	})
	_, chain, _ := issueAndGet(t, c, srv, RoleClientCA, simpleCSR(t), nil)
	if len(chain) != 2 || !chain[0].Equal(srv.Root()) {
		t.Fatal("rewrite not applied")
	}
}

// Many clients at once: the double must stay consistent under -race.
func TestConcurrentIssuance(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	arns := map[string]bool{}
	for i := range n {
		wg.Go(func() {
			role := Roles[1+i%3]
			in := issueInput(srv, role, simpleCSR(t))
			if i%2 == 0 {
				in.IdempotencyToken = aws.String(fmt.Sprintf("t-%d", i/4))
			}
			out, err := c.IssueCertificate(ctx, in)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: in.CertificateAuthorityArn, CertificateArn: out.CertificateArn}); err != nil {
				t.Error(err)
			}
			mu.Lock()
			arns[aws.ToString(out.CertificateArn)] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(srv.Issued()) != len(arns) {
		t.Fatalf("%d minted, %d distinct ARNs", len(srv.Issued()), len(arns))
	}
	seen := map[string]bool{}
	for _, c := range srv.Issued() {
		if seen[c.SerialNumber.String()] {
			t.Fatal("duplicate serial")
		}
		seen[c.SerialNumber.String()] = true
	}
	if srv.Count(OpIssueCertificate) != n || srv.Count(OpGetCertificate) != n || srv.Count("") != 2*n {
		t.Errorf("counts %d %d %d", srv.Count(OpIssueCertificate), srv.Count(OpGetCertificate), srv.Count(""))
	}
}

func BenchmarkIssue(b *testing.B) {
	srv := newServer(b)
	c := newClient(b, srv)
	csr := simpleCSR(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.IssueCertificate(ctx, issueInput(srv, RoleClientCA, csr)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestFreshKeysAndNoAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("generates RSA keys")
	}
	srv := newServer(t, WithFreshKeys(), WithoutAuthCheck(), WithRegion("eu-central-1"), WithAccountID("210987654321"))
	def := newServer(t)
	if srv.Root().PublicKey.(*rsa.PublicKey).Equal(def.Root().PublicKey) {
		t.Error("WithFreshKeys reused the fixed root key")
	}
	if !strings.HasPrefix(srv.ARN(RoleRoot), "arn:aws:acm-pca:eu-central-1:210987654321:certificate-authority/") {
		t.Errorf("ARN %s", srv.ARN(RoleRoot))
	}
	resp, err := http.Post(srv.URL(), "application/x-amz-json-1.1", strings.NewReader(fmt.Sprintf(`{"CertificateAuthorityArn":%q}`, srv.ARN(RoleRoot))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 { // no X-Amz-Target
		t.Errorf("status %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL(), strings.NewReader(fmt.Sprintf(`{"CertificateAuthorityArn":%q}`, srv.ARN(RoleRoot))))
	req.Header.Set("X-Amz-Target", "ACMPrivateCA.DescribeCertificateAuthority")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("unsigned request with WithoutAuthCheck: %d", resp.StatusCode)
	}
	if _, err := New(WithCA("nope", CAConfig{})); err == nil {
		t.Error("unknown role accepted")
	}
}
