package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/issuance"
)

// DefaultDataDir is where the embedded defaults keep the token and root.
const DefaultDataDir = "./certgate-data"

type clientFlags struct {
	server, token, caFile string
	json                  bool
}

func (cf *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&cf.server, "server", "", "server URL (env CERTGATE_SERVER, default https://127.0.0.1:8443)")
	cmd.Flags().StringVar(&cf.token, "token", "", "bearer token (env CERTGATE_TOKEN, default: the admin token in ./certgate-data)")
	cmd.Flags().StringVar(&cf.caFile, "ca-file", "", "PEM roots to trust (env CERTGATE_CA_FILE, default: the root in ./certgate-data)")
	cmd.Flags().BoolVar(&cf.json, "json", false, "print JSON")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// client resolves flags, then environment, then the embedded defaults'
// files, so a developer on the same machine as `certgate serve` needs none.
func (cf *clientFlags) client() (*client.Client, error) {
	server := firstNonEmpty(cf.server, os.Getenv("CERTGATE_SERVER"), "https://127.0.0.1:8443")
	token := firstNonEmpty(cf.token, os.Getenv("CERTGATE_TOKEN"))
	if token == "" {
		b, err := client.ReadFileIfExists(filepath.Join(DefaultDataDir, "admin.token"))
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	caFile := firstNonEmpty(cf.caFile, os.Getenv("CERTGATE_CA_FILE"), filepath.Join(DefaultDataDir, "ca", "root.crt"))
	caPEM, err := client.ReadFileIfExists(caFile)
	if err != nil {
		return nil, err
	}
	return client.New(server, token, caPEM, nil)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// generateKey makes the key the CLI keeps locally.
func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", issuance.KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case issuance.KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("--key-type %q: want ecdsa-p256 or rsa-2048", keyType)
}

// csrFor builds a CSR naming cn and sans, classified the way the server does.
func csrFor(key crypto.Signer, cn string, sans []string) (string, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, s := range sans {
		switch {
		case net.ParseIP(s) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
		case strings.Contains(s, "://"):
			u, err := url.Parse(s)
			if err != nil {
				return "", fmt.Errorf("--san %q: %w", s, err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(s, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

func newIssueCmd(cf *clientFlags) *cobra.Command {
	var (
		profile, cn, csrFile, out, keyType, ttl, idemKey string
		sans                                             []string
		days                                             int
		serverKey                                        bool
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate; the key is generated here and never leaves this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			req := issuance.Request{Profile: profile, CommonName: cn, SANs: sans, TTL: ttl}
			if days > 0 {
				req.ValidityDays = &days
			}
			var key crypto.Signer
			switch {
			case csrFile != "":
				b, err := os.ReadFile(csrFile)
				if err != nil {
					return err
				}
				req.CSR = string(b)
			case serverKey:
				req.KeyType = keyType
			default:
				if key, err = generateKey(keyType); err != nil {
					return err
				}
				if req.CSR, err = csrFor(key, cn, sans); err != nil {
					return err
				}
			}
			hdr := map[string]string{}
			if idemKey != "" {
				hdr["Idempotency-Key"] = idemKey
			}
			var res issuance.Result
			if _, err := c.Do(cmd.Context(), "POST", "/v1/certificates", req, &res, hdr); err != nil {
				return err
			}
			keyPEM := res.PrivateKey
			if key != nil {
				der, err := x509.MarshalPKCS8PrivateKey(key)
				if err != nil {
					return err
				}
				keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			}
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
				if err := ca.WriteFileAtomic(filepath.Join(out, "tls.crt"), []byte(res.Certificate+res.Chain), 0o644); err != nil {
					return err
				}
				if keyPEM != "" {
					if err := ca.WriteFileAtomic(filepath.Join(out, "tls.key"), []byte(keyPEM), 0o600); err != nil {
						return err
					}
				}
				if err := ca.WriteFileAtomic(filepath.Join(out, "ca.crt"), []byte(res.Root), 0o644); err != nil {
					return err
				}
			}
			res.PrivateKey = "" // never printed
			if cf.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "serial      %s\nprofile     %s (CA %s)\nsubject     %s\nsans        %s\nvalid       %s → %s\n",
				res.Serial, res.Profile, res.CA, res.CommonName, strings.Join(res.SANs, ", "),
				res.NotBefore.Format(time.RFC3339), res.NotAfter.Format(time.RFC3339))
			if res.CertificateARN != "" {
				fmt.Fprintf(w, "arn         %s\n", res.CertificateARN)
			}
			if out != "" {
				fmt.Fprintf(w, "wrote       %s (tls.crt, ca.crt%s)\n", out, map[bool]string{true: ", tls.key", false: ""}[keyPEM != ""])
			} else {
				fmt.Fprint(w, res.Certificate)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&profile, "profile", "server", "client, server or machine")
	cmd.Flags().StringVar(&cn, "cn", "", "common name (added to the SANs)")
	cmd.Flags().StringSliceVar(&sans, "san", nil, "subject alternative name: DNS, IP, URI or e-mail (repeatable)")
	cmd.Flags().StringVar(&csrFile, "csr", "", "use this CSR (PEM) instead of generating a key")
	cmd.Flags().StringVar(&out, "out", "", "directory for tls.crt, tls.key and ca.crt")
	cmd.Flags().StringVar(&keyType, "key-type", "ecdsa-p256", "ecdsa-p256 or rsa-2048")
	cmd.Flags().IntVar(&days, "days", 0, "validity in days (1-7)")
	cmd.Flags().StringVar(&ttl, "ttl", "", "validity as a duration, e.g. 24h")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "Idempotency-Key header")
	cmd.Flags().BoolVar(&serverKey, "server-key", false, "let the server generate the key (it is returned once)")
	return cmd
}

func newGetCmd(cf *clientFlags) *cobra.Command {
	var pemOnly bool
	cmd := &cobra.Command{
		Use:   "get SERIAL",
		Short: "Show one certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var v api.CertificateView
			if _, err := c.Do(cmd.Context(), "GET", "/v1/certificates/"+url.PathEscape(args[0]), nil, &v, nil); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case cf.json:
				return printJSON(w, v)
			case pemOnly:
				fmt.Fprint(w, v.Certificate)
				return nil
			}
			fmt.Fprintf(w, "serial      %s\nstatus      %s\nprofile     %s (CA %s)\nsubject     %s\nsans        %s\nvalid       %s → %s\nrequester   %s\nsha256      %s\n",
				v.Serial, v.Status, v.Profile, v.CA, v.CommonName, strings.Join(v.SANs, ", "),
				v.NotBefore.Format(time.RFC3339), v.NotAfter.Format(time.RFC3339), v.Requester, v.Fingerprint)
			if v.RevokedAt != nil {
				fmt.Fprintf(w, "revoked     %s (%s)\n", v.RevokedAt.Format(time.RFC3339), v.RevocationReason)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&pemOnly, "pem", false, "print only the certificate PEM")
	return cmd
}

func newListCmd(cf *clientFlags) *cobra.Command {
	var profile, status, cn, expiresBefore, pageToken, caName string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List and search certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var rows []api.CertificateView
			tok := pageToken
			for {
				var page struct {
					Certificates []api.CertificateView `json:"certificates"`
					Next         string                `json:"next_page_token"`
				}
				q := client.Query(map[string]string{"profile": profile, "status": status, "common_name": cn, "ca": caName,
					"expires_before": expiresBefore, "limit": fmt.Sprint(limit), "page_token": tok})
				if _, err := c.Do(cmd.Context(), "GET", "/v1/certificates"+q, nil, &page, nil); err != nil {
					return err
				}
				rows = append(rows, page.Certificates...)
				tok = page.Next
				if !all || tok == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			if cf.json {
				return printJSON(w, map[string]any{"certificates": rows, "next_page_token": tok})
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATUS\tPROFILE\tCA\tCOMMON NAME\tNOT AFTER\tREQUESTER")
			for _, r := range rows {
				name := r.CommonName
				if r.Cluster != "" {
					name = "cluster " + r.Cluster
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Serial, r.Status, r.Profile, r.CA, name, r.NotAfter.Format(time.RFC3339), r.Requester)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if tok != "" {
				fmt.Fprintf(w, "more: --page-token %s\n", tok)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&profile, "profile", "", "filter by profile")
	cmd.Flags().StringVar(&status, "status", "", "pending, issued, failed or revoked")
	cmd.Flags().StringVar(&cn, "cn", "", "filter by common name")
	cmd.Flags().StringVar(&caName, "ca", "", "filter by issuing CA")
	cmd.Flags().StringVar(&expiresBefore, "expires-before", "", "RFC 3339 time")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue from this token")
	cmd.Flags().IntVar(&limit, "limit", 100, "page size (1-1000)")
	cmd.Flags().BoolVar(&all, "all", false, "follow every page")
	return cmd
}
