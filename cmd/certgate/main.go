// Command certgate is the certificate service and its CLI.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/client"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(os.Stderr, "error:", ce.Error())
		} else {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "certgate",
		Short:         "Short-lived X.509 certificates from AWS Private CA or an embedded local CA",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cf := &clientFlags{}
	root.AddCommand(newServeCmd(), newIssueCmd(cf), newGetCmd(cf), newListCmd(cf), newBenchCmd(cf))
	for _, extra := range extraCommands {
		root.AddCommand(extra(cf))
	}
	return root
}

// extraCommands lets feature files register commands without touching newRoot.
var extraCommands []func(*clientFlags) *cobra.Command
