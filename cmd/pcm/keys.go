package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the keys that sign jobs",
		Long: `Publishers sign every job offer and cancellation with an ed25519 key (an nkeys user key);
agents given --trusted-keys run only jobs signed by one of those keys and report the others
rejected. To rotate, trust the new public key next to the old one on every agent, switch the
publishers to the new key, then drop the old one.`,
	}
	cmd.AddCommand(newKeysNewCmd(), newKeysPublicCmd())
	return cmd
}

func newKeysNewCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "new --out FILE",
		Short: "Create a signing key: write its seed to FILE (mode 0600) and print its public key",
		Long: `Writes a new signing seed to FILE, readable by its owner only, and prints the public key to
give agents with --trusted-keys. FILE is never overwritten. Keep it secret: whoever holds it
can run commands on every agent that trusts its public key.`,
		Example: `  pcm keys new --out ~/.config/pcm/signing.nk
  pcm publish --signing-key ~/.config/pcm/signing.nk --all -- echo hello
  pcm agent --trusted-keys "$(pcm keys public ~/.config/pcm/signing.nk)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out FILE is required: where to write the new signing seed")
			}
			pub, err := publisher.NewSigningKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the signing seed to (created with mode 0600, never overwritten)")
	return cmd
}

func newKeysPublicCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "public FILE",
		Short: "Print the public key of a signing key file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kp, err := publisher.ReadSigningKey(args[0])
			if err != nil {
				return err
			}
			defer kp.Wipe()
			pub, err := kp.PublicKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			return nil
		},
	}
}

// signerFrom reads the signing key of --signing-key; nil when no file is
// given (the events go unsigned).
func signerFrom(path string) (nkeys.KeyPair, error) {
	if path == "" {
		return nil, nil
	}
	return publisher.ReadSigningKey(path)
}

// signingKeyUsage is the help of --signing-key.
const signingKeyUsage = "file holding the seed that signs the events (pcm keys new); agents with trusted keys refuse unsigned ones"

// trustedKeys merges the keys of --trusted-keys and of --trusted-keys-file
// (one or more keys per line, separated by spaces or commas; blank lines
// and # comments ignored), checks each, and drops duplicates.
func trustedKeys(keys []string, file string) ([]string, error) {
	var all []string
	add := func(s string) {
		for _, k := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			if !slices.Contains(all, k) {
				all = append(all, k)
			}
		}
	}
	for _, k := range keys {
		add(k)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--trusted-keys-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			add(line)
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("%w: --trusted-keys-file %s holds no key: an empty list would run unsigned jobs", events.ErrInvalidKey, file)
		}
	}
	if err := events.ValidateTrustedKeys(all); err != nil {
		return nil, fmt.Errorf("--trusted-keys: %w", err)
	}
	return all, nil
}

// trustedKeysUsage and trustedKeysFileUsage are the help of the agents'
// flags.
const (
	trustedKeysUsage     = "public keys of the publishers whose signed jobs this client runs, comma-separated (several during a key rotation); without any, unsigned jobs run"
	trustedKeysFileUsage = "file of trusted public keys, one per line (# comments), added to --trusted-keys"
)
