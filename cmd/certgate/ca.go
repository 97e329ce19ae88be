package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/verify"
)

func init() {
	extraCommands = append(extraCommands, newCACmd)
}

func newCACmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The server's CA certificates: list, chain, refresh",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCAListCmd(cf), newCAChainCmd(cf), newCARefreshCmd(cf))
	return cmd
}

type caList struct {
	CAs []api.CAView `json:"cas"`
}

func newCAListCmd(cf *clientFlags) *cobra.Command {
	return newCATableCmd(cf, "list", "List the configured CAs: status, expiry, chain verdict (GET /v1/cas)", "GET", "/v1/cas")
}

func newCARefreshCmd(cf *clientFlags) *cobra.Command {
	return newCATableCmd(cf, "refresh", "Fetch every CA from the backend now and show the result (POST /v1/cas/refresh; admin)", "POST", "/v1/cas/refresh")
}

// newCATableCmd is a command that calls one CA endpoint and prints its list.
func newCATableCmd(cf *clientFlags, use, short, method, path string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var out caList
			if _, err := c.Do(cmd.Context(), method, path, nil, &out, nil); err != nil {
				return err
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printCATable(cmd.OutOrStdout(), out.CAs)
		},
	}
	cf.register(cmd)
	return cmd
}

func printCATable(w io.Writer, cas []api.CAView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tBACKEND\tSTATUS\tNOT AFTER\tDAYS LEFT\tCHAIN\tFETCHED\tSUBJECT")
	var notes []string
	for _, v := range cas {
		chain := "valid"
		if !v.ChainValid {
			chain = "INVALID"
		}
		fetched := v.FetchedAt.Format(time.RFC3339)
		if v.Stale {
			fetched += " (stale)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", v.Name, v.Backend, v.Status, v.NotAfter.Format(time.RFC3339),
			v.DaysToExpiry, chain, fetched, v.Subject)
		if v.Warning != "" {
			notes = append(notes, fmt.Sprintf("warning: %s: %s", v.Name, v.Warning))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

func newCAChainCmd(cf *clientFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "chain NAME",
		Short: "Print a CA's chain as PEM: the CA first, then its issuers up to the root (GET /v1/cas/{name}/chain)",
		Example: `  certgate ca chain server-ca > server-ca-chain.pem
  certgate ca chain istio-ca --json`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"root", "client-ca", "server-ca", "istio-ca"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var raw []byte
			if _, err := c.Do(cmd.Context(), "GET", "/v1/cas/"+url.PathEscape(args[0])+"/chain", nil, &raw, nil); err != nil {
				return err
			}
			if cf.json {
				certs, err := verify.ParsePEM(raw)
				if err != nil {
					return fmt.Errorf("the server's chain: %w", err)
				}
				type certView struct {
					Subject   string    `json:"subject"`
					Issuer    string    `json:"issuer"`
					Serial    string    `json:"serial"`
					NotBefore time.Time `json:"not_before"`
					NotAfter  time.Time `json:"not_after"`
				}
				v := struct {
					Name         string     `json:"name"`
					Certificates []certView `json:"certificates"`
					PEM          string     `json:"pem"`
				}{Name: args[0], PEM: string(raw)}
				for _, x := range certs {
					v.Certificates = append(v.Certificates, certView{x.Subject.String(), x.Issuer.String(), strings.ToLower(x.SerialNumber.Text(16)),
						x.NotBefore.UTC(), x.NotAfter.UTC()})
				}
				return printJSON(cmd.OutOrStdout(), v)
			}
			if out != "" {
				return os.WriteFile(out, raw, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(raw)
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "write the PEM to this file instead of standard output")
	return cmd
}
