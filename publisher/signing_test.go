package publisher_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// TestSigningKeyFiles: a new key is written 0600 and read back; a key file
// is never overwritten; a file without a usable seed is refused without
// showing its content.
func TestSigningKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "signing.nk")
	pub, err := publisher.NewSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		t.Fatalf("public key %q is not a user key", pub)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	kp, err := publisher.ReadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := kp.PublicKey(); got != pub {
		t.Fatalf("read back %s, want %s", got, pub)
	}
	if _, err := publisher.NewSigningKey(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: want fs.ErrExist, got %v", err)
	}
	if again, _ := publisher.ReadSigningKey(path); again == nil {
		t.Fatal("the refused overwrite damaged the key file")
	} else if got, _ := again.PublicKey(); got != pub {
		t.Fatal("the refused overwrite changed the key")
	}

	// A NATS credentials file with a user seed is read too.
	user, _ := nkeys.CreateUser()
	seed, _ := user.Seed()
	creds := "-----BEGIN NATS USER JWT-----\neyJ0eXAi.e30.sig\n------END NATS USER JWT------\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"
	credsPath := filepath.Join(dir, "user.creds")
	if err := os.WriteFile(credsPath, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	if kp, err := publisher.ReadSigningKey(credsPath); err != nil {
		t.Fatalf("creds file: %v", err)
	} else if got, _ := kp.PublicKey(); got != mustPub(t, user) {
		t.Fatal("creds file: wrong key")
	}

	server, _ := nkeys.CreateServer()
	serverSeed, _ := server.Seed()
	for name, body := range map[string]string{
		"garbage":     "this is not a seed SECRET-CONTENT\n",
		"public key":  mustPub(t, user) + "\n",
		"server seed": string(serverSeed) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := publisher.ReadSigningKey(p)
			if !errors.Is(err, events.ErrInvalidKey) {
				t.Fatalf("want ErrInvalidKey, got %v", err)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), string(serverSeed)) {
				t.Fatalf("the error shows the file's content: %v", err)
			}
		})
	}
	if _, err := publisher.ReadSigningKey(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: want fs.ErrNotExist, got %v", err)
	}
}

func mustPub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestPublishSigns: with a Signer, every stored offer and cancellation is
// signed by it; without one, they are unsigned; a key that cannot sign is
// refused by New.
func TestPublishSigns(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	kp, _ := nkeys.CreateUser()
	pub := mustPub(t, kp)

	server, _ := nkeys.CreateServer()
	if _, err := publisher.New(tb.JS, publisher.Config{Name: "ci", Signer: server}); !errors.Is(err, events.ErrInvalidKey) {
		t.Fatalf("server key as signer: want ErrInvalidKey, got %v", err)
	}

	signed, err := publisher.New(tb.JS, publisher.Config{Name: "ci", Signer: kp})
	if err != nil {
		t.Fatal(err)
	}
	if signed.Signer() != pub {
		t.Fatalf("Signer() = %q, want %q", signed.Signer(), pub)
	}
	unsigned, err := publisher.New(tb.JS, publisher.Config{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	job := events.JobOffered{
		Command: events.CommandLine{Argv: []string{"true"}, Automated: true},
		Targets: []events.Target{{Kind: events.TargetClient, Name: "c1"}, {Kind: events.TargetGroup, Name: "lab"}},
	}
	published, err := signed.Publish(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	id := published.JobID
	if err := signed.Cancel(ctx, id, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	published, err = unsigned.Publish(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	plain := published.JobID

	stored := storedJobEvents(t, tb.JS)
	if len(stored) != 7 {
		t.Fatalf("PCM_JOBS holds %d events, want 2 offers, 3 cancellations (the job's own subject and its 2 targets) and 2 unsigned offers", len(stored))
	}
	for _, ev := range stored {
		signer, err := events.Verify(ev, []string{pub})
		switch {
		case events.JobIDOf(ev) == plain:
			if !errors.Is(err, events.ErrUnsigned) {
				t.Fatalf("unsigned publisher's %s: want ErrUnsigned, got %v", ev.Type(), err)
			}
		case err != nil || signer != pub:
			t.Fatalf("signed publisher's %s: signer %q, %v", ev.Type(), signer, err)
		}
	}
}

// storedJobEvents decodes every event of PCM_JOBS.
func storedJobEvents(t *testing.T, js jetstream.JetStream) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.StreamJobs, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for n := info.NumPending; n > 0; n-- {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}
