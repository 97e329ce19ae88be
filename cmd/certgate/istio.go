package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/istio"
)

func init() {
	extraCommands = append(extraCommands, newIstioCmd)
}

func newIstioCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "istio",
		Short: "Istio support: per-cluster intermediate CAs for istiod's plug-in CA",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newIstioCacertsCmd(cf))
	return cmd
}

func newIstioCacertsCmd(cf *clientFlags) *cobra.Command {
	var o istio.CacertsOptions
	cmd := &cobra.Command{
		Use:   "cacerts --cluster NAME --out DIR",
		Short: "Issue a cluster's Istio intermediate CA and write the cacerts files",
		Long: `Issue an intermediate CA (CA:TRUE, pathlen 0, signed by the root) for one
cluster and write istiod's plug-in CA files into DIR:

  ca-cert.pem     the cluster's intermediate
  ca-key.pem      its private key (mode 0600)
  root-cert.pem   the root, shared by every cluster of the mesh
  cert-chain.pem  ca-cert.pem, then its issuers up to and including the root

By default the key is generated here and only a CSR is sent, so the CA key
never crosses the network; --server-key lets the server generate it.
--secret-yaml also writes cacerts.yaml, a Secret "cacerts" (mode 0600: it
holds the key). Existing files are not replaced without --force.

List issued intermediates with: certgate list --profile istio-intermediate`,
		Example: `  certgate istio cacerts --cluster east --out east/ --secret-yaml
  kubectl apply -f east/cacerts.yaml
  kubectl rollout restart deployment/istiod -n istio-system`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			out, err := istio.Cacerts(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			res := *out.Result
			res.CAKey = "" // never printed
			w := cmd.OutOrStdout()
			if cf.json {
				return printJSON(w, map[string]any{"intermediate": res, "files": out.Written})
			}
			fmt.Fprintf(w, "serial      %s\ncluster     %s\nsubject     %s\nvalid       %s → %s (%d days)\n",
				res.Serial, res.Cluster, res.Subject, res.NotBefore.Format(time.RFC3339), res.NotAfter.Format(time.RFC3339),
				int(res.NotAfter.Sub(res.NotBefore).Round(time.Hour)/(24*time.Hour)))
			if res.CertificateARN != "" {
				fmt.Fprintf(w, "arn         %s\n", res.CertificateARN)
			}
			fmt.Fprintf(w, "wrote       %s\n\n", strings.Join(out.Written, "\n            "))
			fmt.Fprint(w, istio.NextSteps(o.Out, out.Bundle, o.WriteOptions))
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Cluster, "cluster", "", "cluster name, a DNS label such as east (required)")
	f.StringVar(&o.Out, "out", "", "directory for the cacerts files (required; created 0700)")
	f.BoolVar(&o.SecretYAML, "secret-yaml", false, "also write cacerts.yaml, the Kubernetes Secret manifest")
	f.StringVar(&o.Namespace, "namespace", istio.DefaultNamespace, "namespace of the Secret")
	f.IntVar(&o.Days, "days", 0, "validity in days (default: the server's istio_validity, 365)")
	f.BoolVar(&o.ServerKey, "server-key", false, "let the server generate the key (it is returned once)")
	f.StringVar(&o.KeyType, "key-type", "ecdsa-p256", "ecdsa-p256, ecdsa-p384 or rsa-2048")
	f.BoolVar(&o.Force, "force", false, "replace existing cacerts files in --out")
	f.StringVar(&o.IdempotencyKey, "idempotency-key", "", "Idempotency-Key header")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
