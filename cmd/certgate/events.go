package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/revocation"
)

func init() { extraCommands = append(extraCommands, newEventsCmd) }

// eventTime accepts an RFC 3339 time or a duration back from now ("90m",
// "24h", "7d").
func eventTime(flag, v string, now time.Time) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d < 0 {
		return "", fmt.Errorf("--%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (90m, 24h, 7d)", flag, v)
	}
	return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
}

func newEventsCmd(cf *clientFlags) *cobra.Command {
	var caName, typ, since, until, order, pageToken, serial, principal string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Query certificate events by CA, type and time range",
		Long: "Query certificate events (issued, revoked, failed, refused, ca_refreshed, ca_expiring, admin, …).\n" +
			"--since is inclusive and --until exclusive; both take an RFC 3339 time or a duration back\n" +
			"from now (24h, 7d). Newest first unless --order oldest; --all follows every page.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			s, err := eventTime("since", since, now)
			if err != nil {
				return err
			}
			u, err := eventTime("until", until, now)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var events []revocation.EventView
			tok := pageToken
			for {
				var page revocation.EventPage
				q := client.Query(map[string]string{"ca": caName, "type": typ, "since": s, "until": u, "order": order,
					"serial": serial, "principal": principal, "limit": fmt.Sprint(limit), "page_token": tok})
				if _, err := c.Do(cmd.Context(), "GET", "/v1/events"+q, nil, &page, nil); err != nil {
					return err
				}
				events = append(events, page.Events...)
				tok = page.NextPageToken
				if !all || tok == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			if cf.json {
				if events == nil {
					events = []revocation.EventView{}
				}
				return printJSON(w, revocation.EventPage{Events: events, NextPageToken: tok})
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTYPE\tCA\tSERIAL\tPRINCIPAL\tOUTCOME\tDETAILS")
			for _, e := range events {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Type, evDash(e.CA), evDash(e.Serial),
					evDash(e.Principal), evDash(e.Outcome), evDetails(e.Details))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if tok != "" {
				fmt.Fprintf(w, "more: --page-token %s (or --all)\n", tok)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&caName, "ca", "", "root, client-ca, server-ca or istio-ca")
	cmd.Flags().StringVar(&typ, "type", "", "event type (issued, revoked, failed, refused, ca_refreshed, ca_expiring, admin)")
	cmd.Flags().StringVar(&since, "since", "", "from this time, inclusive (RFC 3339 or a duration back from now)")
	cmd.Flags().StringVar(&until, "until", "", "up to this time, exclusive (RFC 3339 or a duration back from now)")
	cmd.Flags().StringVar(&order, "order", "newest", "newest or oldest first")
	cmd.Flags().StringVar(&serial, "serial", "", "only events of this certificate")
	cmd.Flags().StringVar(&principal, "principal", "", "only events of this principal (admin)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue from this token")
	cmd.Flags().IntVar(&limit, "limit", 100, "page size (1-1000)")
	cmd.Flags().BoolVar(&all, "all", false, "follow every page")
	return cmd
}

func evDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func evDetails(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strings.ReplaceAll(d[k], "\n", " ")
	}
	return strings.Join(parts, " ")
}
