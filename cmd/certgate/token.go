package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/policy"
)

func init() {
	extraCommands = append(extraCommands, newTokenCmd)
}

func newTokenCmd(_ *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Bearer tokens for auth.principals",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTokenNewCmd())
	return cmd
}

// principalYAML is one auth.principals entry as `token new` prints it: only
// the keys that are set, lists in flow style, never the token itself.
type principalYAML struct {
	Name        string        `yaml:"name"`
	TokenSHA256 string        `yaml:"token_sha256"`
	Operations  []string      `yaml:"operations,omitempty,flow"`
	Profiles    []string      `yaml:"profiles,omitempty,flow"`
	Allow       []string      `yaml:"allow,omitempty,flow"`
	Deny        []string      `yaml:"deny,omitempty,flow"`
	MaxValidity time.Duration `yaml:"max_validity,omitempty"`
}

// tokenNewOutput is the --json answer of `token new`.
type tokenNewOutput struct {
	Name        string `json:"name"`
	Token       string `json:"token,omitempty"`
	TokenFile   string `json:"token_file,omitempty"`
	TokenSHA256 string `json:"token_sha256"`
	ConfigYAML  string `json:"config_yaml"`
}

func newTokenNewCmd() *cobra.Command {
	var (
		ops, profiles, allow, deny []string
		maxValidity, tokenFile     string
		asJSON                     bool
	)
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Make a bearer token for a new principal and print its auth.principals entry",
		Long: `Make a fresh random bearer token for the principal NAME and print it once,
with the auth.principals entry to add to the certgate config file. The entry
holds only the token's SHA-256 (token_sha256): the token itself is never
written into configuration, and certgate cannot show it again.

The principal's policy comes from the flags; nothing is allowed by default:
a principal needs --profiles and --allow patterns to issue anything.
Callers send the token as "Authorization: Bearer TOKEN" (CLI: --token or
CERTGATE_TOKEN). No server is contacted: add the entry and restart certgate.`,
		Example: `  certgate token new payments-ci --operations issue,read --profiles server,client \
      --allow '*.payments.svc.cluster.local,10.20.0.0/16' --deny admin.payments.svc.cluster.local --max-validity 72h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkPrincipalName(name); err != nil {
				return err
			}
			pc := policy.Config{Operations: ops, Profiles: profiles, Allow: allow, Deny: deny}
			if maxValidity != "" {
				d, err := config.ParseDuration(maxValidity)
				if err != nil || d <= 0 {
					return fmt.Errorf("--max-validity %q: want a positive duration such as 72h or 3d", maxValidity)
				}
				pc.MaxValidity = d
			}
			pol, err := policy.Compile(pc)
			if err != nil {
				return fmt.Errorf("the policy would not load: %w", err)
			}
			token, hash, err := auth.NewToken()
			if err != nil {
				return fmt.Errorf("generating the token: %w", err)
			}
			entry, err := yaml.Marshal([]principalYAML{{Name: name, TokenSHA256: hash, Operations: ops, Profiles: profiles,
				Allow: allow, Deny: deny, MaxValidity: pc.MaxValidity}})
			if err != nil {
				return err
			}
			if tokenFile != "" {
				if err := writeTokenFile(tokenFile, token); err != nil {
					return err
				}
			}
			for _, w := range policyWarnings(pol, pc) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				o := tokenNewOutput{Name: name, TokenSHA256: hash, ConfigYAML: string(entry)}
				if tokenFile != "" {
					o.TokenFile = tokenFile
				} else {
					o.Token = token
				}
				return printJSON(out, o)
			}
			if tokenFile != "" {
				fmt.Fprintf(out, "Token for principal %q written to %s (mode 0600); certgate keeps only its SHA-256.\n", name, tokenFile)
			} else {
				fmt.Fprintf(out, "Token for principal %q (shown only now; certgate keeps only its SHA-256):\n\n%s\n", name, token)
			}
			fmt.Fprintf(out, "\nAdd this entry under auth.principals in the certgate config file, then restart certgate:\n\n%s", entry)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&ops, "operations", []string{policy.OpIssue, policy.OpRead}, "operations: issue, read, revoke, admin (comma-separated or repeated)")
	f.StringSliceVar(&profiles, "profiles", nil, "profiles it may issue: client, server, machine, istio-intermediate")
	f.StringSliceVar(&allow, "allow", nil, `name patterns it may issue for: "api.internal", "*.svc.cluster.local", "10.20.0.0/16", "spiffe://td/ns/x/*", "*@example.com"`)
	f.StringSliceVar(&deny, "deny", nil, "name patterns refused even when allowed (deny beats allow)")
	f.StringVar(&maxValidity, "max-validity", "", "longest validity it may ask for, e.g. 72h or 3d (default: the profile's cap)")
	f.StringVar(&tokenFile, "token-file", "", "write the token to this new file (mode 0600) instead of printing it")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// checkPrincipalName keeps names printable and short enough for the
// database's requester and principal columns.
func checkPrincipalName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("principal name %q: want 1 to 128 characters", name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("principal name %q: no spaces or control characters", name)
		}
	}
	if name == auth.AdminName {
		return fmt.Errorf("principal name %q is the bootstrap admin's; choose another", name)
	}
	return nil
}

// policyWarnings points out a principal that would be refused everything it
// was presumably made for.
func policyWarnings(pol *policy.Policy, pc policy.Config) []string {
	var w []string
	if pol.Can(policy.OpIssue) {
		if len(pc.Profiles) == 0 && !pol.IsAdmin() {
			w = append(w, "no --profiles: this principal can issue with no profile")
		}
		if len(pc.Allow) == 0 {
			w = append(w, "no --allow patterns: this principal can issue for no name")
		}
	}
	if len(pc.Operations) == 0 {
		w = append(w, "no --operations: this principal can do nothing")
	}
	return w
}

// writeTokenFile creates path (0600), refusing to replace an existing file.
func writeTokenFile(path, token string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("--token-file %s already exists; not replacing it", path)
		}
		return err
	}
	if _, err := io.WriteString(f, token+"\n"); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
