package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/verify"
)

func init() {
	extraCommands = append(extraCommands, newVerifyCmd)
}

// verifyFailed makes main exit 1 with a one-line reason after the report.
type verifyFailed struct{ failed []string }

func (e verifyFailed) Error() string {
	return "verification failed: " + strings.Join(e.failed, ", ")
}

func (e verifyFailed) Unwrap() error { return exitCode(1) }

func newVerifyCmd(cf *clientFlags) *cobra.Command {
	var certFile, chainFile string
	var requireRevocation bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "verify --cert FILE [--chain FILE]",
		Short: "Check a certificate: trust, signature, validity and revocation",
		Long: `Check a certificate the way a relying party would:

  trust       it chains to the trust bundle: --ca-file when given (or
              CERTGATE_CA_FILE), else the server's GET /v1/trust-bundle
  signature   its issuer's key signed it
  validity    it (and its issuers) are valid now
  revocation  it is not on its issuing CA's CRL (GET /v1/cas/{name}/crl);
              "not checked" when the server has no CRL to offer

The certificate file may hold the whole chain (certgate issue writes tls.crt
that way); --chain adds intermediates. Without them the server's CA chains
(GET /v1/cas/{name}/chain) are used. None of these endpoints needs a token.

The exit status is 0 only when every check holds; a revocation check that
could not be made counts as holding unless --require-revocation is given.`,
		Example: `  certgate verify --cert out/tls.crt
  certgate verify --cert leaf.pem --chain chain.pem --ca-file root.pem --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" {
				return fmt.Errorf("--cert is required")
			}
			b, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			certs, err := verify.ParsePEM(b)
			if err != nil {
				return fmt.Errorf("%s: %w", certFile, err)
			}
			o := verify.Options{Cert: certs[0], Intermediates: certs[1:], RequireRevocation: requireRevocation}
			if chainFile != "" {
				b, err := os.ReadFile(chainFile)
				if err != nil {
					return err
				}
				chain, err := verify.ParsePEM(b)
				if err != nil {
					return fmt.Errorf("%s: %w", chainFile, err)
				}
				o.Intermediates = append(o.Intermediates, chain...)
			}
			if f := firstNonEmpty(cf.caFile, os.Getenv("CERTGATE_CA_FILE")); f != "" {
				if o.Roots, err = readRoots(f); err != nil {
					return err
				}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			o.Source = verify.ServerSource{Client: c}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rep := verify.Run(ctx, o)
			if cf.json {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				rep.Print(cmd.OutOrStdout())
			}
			if !rep.OK {
				failed := rep.Failed()
				if len(failed) == 0 {
					failed = []string{"revocation not checked"}
				}
				return verifyFailed{failed: failed}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&certFile, "cert", "", "certificate to check (PEM or DER; further PEM certificates in the file are used as its chain)")
	cmd.Flags().StringVar(&chainFile, "chain", "", "PEM intermediates to build the path with")
	cmd.Flags().BoolVar(&requireRevocation, "require-revocation", false, "fail when revocation cannot be checked")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "overall time for the server's answers")
	return cmd
}

func readRoots(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	roots, err := verify.ParsePEM(b)
	if err != nil {
		return nil, fmt.Errorf("--ca-file %s: %w", path, err)
	}
	return roots, nil
}
