package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/revocation"
)

func init() { extraCommands = append(extraCommands, newRevokeCmd) }

func newRevokeCmd(cf *clientFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a certificate (serial in hex, with or without colons)",
		Long: "Revoke a certificate. On the local CA the revocation shows in its CRL and OCSP at once;\n" +
			"on AWS Private CA it is sent to PCA first, whose CRL and OCSP follow within PCA's own delays.\n\n" +
			"Reasons: " + strings.Join(revocation.ReasonNames(), ", ") + ".",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := revocation.ParseReason(reason); err != nil {
				return fmt.Errorf("--reason: %s", strings.TrimPrefix(err.Error(), "validation_failed: "))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var v api.CertificateView
			body := revocation.RevokeRequest{Reason: reason}
			if _, err := c.Do(cmd.Context(), "POST", "/v1/certificates/"+url.PathEscape(args[0])+"/revoke", body, &v, nil); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if cf.json {
				v.Certificate = ""
				return printJSON(w, v)
			}
			when := ""
			if v.RevokedAt != nil {
				when = v.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "revoked     %s\nreason      %s\nat          %s\nprofile     %s (CA %s)\nsubject     %s\n",
				v.Serial, v.RevocationReason, when, v.Profile, v.CA, v.CommonName)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "revocation reason: "+strings.Join(revocation.ReasonNames(), ", "))
	return cmd
}
