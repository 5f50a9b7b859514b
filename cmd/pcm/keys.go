package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
		Args:  exactArgs(1),
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

// keySet is what a client trusts: its publishers' keys, and its rollout
// controllers' keys, which it believes for halts only.
type keySet struct {
	publishers, controllers []string
}

// controllerLine starts a line of a keys file that lists rollout
// controller keys.
const controllerLine = "controller"

// trustedKeys merges the keys of --trusted-keys, of --controller-keys and
// of --trusted-keys-file (one or more keys per line, separated by spaces or
// commas; a line starting with "controller" lists controller keys; blank
// lines and # comments ignored), checks each, and drops duplicates.
func trustedKeys(keys, controllers []string, file string) (keySet, error) {
	var set keySet
	add := func(list *[]string, s string) {
		for _, k := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			if !slices.Contains(*list, k) {
				*list = append(*list, k)
			}
		}
	}
	for _, k := range keys {
		add(&set.publishers, k)
	}
	for _, k := range controllers {
		add(&set.controllers, k)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return set, fmt.Errorf("--trusted-keys-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), controllerLine+" "); ok {
				add(&set.controllers, rest)
				continue
			}
			add(&set.publishers, line)
		}
		if len(set.publishers) == 0 {
			return set, fmt.Errorf("%w: --trusted-keys-file %s holds no publisher key: an empty list would run unsigned jobs", events.ErrInvalidKey, file)
		}
	}
	if err := events.ValidateTrustedKeys(set.publishers); err != nil {
		return set, fmt.Errorf("--trusted-keys: %w", err)
	}
	if err := events.ValidateTrustedKeys(set.controllers); err != nil {
		return set, fmt.Errorf("--controller-keys: %w", err)
	}
	return set, nil
}

// trustFlags say which publishers a face of the agent trusts.
type trustFlags struct {
	keys, controllers []string
	file              string
	allowUnsigned     bool
}

// register adds --trusted-keys, --trusted-keys-file and --allow-unsigned.
func (f *trustFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.keys, "trusted-keys", nil, "public keys of the publishers whose signed jobs this client runs, comma-separated (several during a key rotation)")
	fs.StringVar(&f.file, "trusted-keys-file", "", "file of trusted public keys, one per line (# comments), added to --trusted-keys (default with --creds: CLIENT-trusted.keys next to the credentials, when it exists)")
	fs.BoolVar(&f.allowUnsigned, "allow-unsigned", false, "with credentials and no trusted key, run unsigned jobs anyway (an open broker always does)")
	fs.StringSliceVar(&f.controllers, "controller-keys", nil, "public keys of the rollout controllers whose signed halts this client obeys, comma-separated (they may halt a staged rollout, never start anything; also \"controller KEY\" lines of --trusted-keys-file)")
}

// resolve returns the keys to trust: those of --trusted-keys,
// --controller-keys and --trusted-keys-file or, when neither of the first
// and last is given, those of the
// CLIENT-trusted.keys that pcm enroll wrote next to the credentials creds.
// A face connected with credentials refuses to start without any key unless
// --allow-unsigned is given: anyone allowed to publish could otherwise run
// commands on it. With no credentials (an open broker) no key means
// unsigned jobs run.
func (f *trustFlags) resolve(creds, client string) (keySet, error) {
	file := f.file
	if file == "" && len(f.keys) == 0 && creds != "" {
		if next := filepath.Join(filepath.Dir(creds), trustedKeysName(client)); fileExists(next) {
			file = next
		}
	}
	keys, err := trustedKeys(f.keys, f.controllers, file)
	if err != nil {
		return keys, err
	}
	if len(keys.publishers) == 0 && creds != "" && !f.allowUnsigned {
		return keys, fmt.Errorf("%w: this face connects with credentials but trusts no publisher key, so it would run jobs nobody signed: give --trusted-keys or --trusted-keys-file (pcm enroll --trusted-keys writes %s next to the credentials), or --allow-unsigned to run unsigned jobs",
			events.ErrInvalidKey, trustedKeysName(client))
	}
	return keys, nil
}

// fileExists tells whether path names an existing file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
