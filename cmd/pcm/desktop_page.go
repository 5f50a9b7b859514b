package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/desktopweb"
	"github.com/pcm-project/pcm/agent/notify"
)

// desktopLogger is the desktop's logger: what the user asked for
// (--log-level, --log-file), or else the state dir's desktop.log at info
// with only errors on stderr: a person at the desktop reads what they
// asked for, not logs.
func desktopLogger(cmd *cobra.Command, g *globals, stateDir string) (*zap.Logger, error) {
	if cmd.Flags().Changed("log-level") || g.logFile != "" {
		return g.log, nil
	}
	file, err := newLogger("info", filepath.Join(stateDir, "desktop.log"))
	if err != nil {
		return g.log, nil // no file to write: logs stay on stderr
	}
	errs, err := newLogger("error", "")
	if err != nil {
		return nil, err
	}
	return zap.New(zapcore.NewTee(file.Core(), errs.Core())), nil
}

// runSession runs the desktop session with its page and notifications; a
// click on a notification opens the page.
func runSession(cmd *cobra.Command, f *desktopFlags, d *agent.Desktop) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	var show []func(agent.Notice)
	var srv *desktopweb.Server
	var forward func(agent.Notice)
	if f.page {
		var err error
		srv, err = desktopweb.New(desktopweb.Config{Face: d, Client: f.clientID, Logger: f.log.Named("page"),
			Ended: func(n agent.Notice) { // a job the page installed ended
				if forward != nil {
					forward(n)
				}
			}})
		if err != nil {
			return err
		}
		show = append(show, srv.Notice)
		if err := desktopweb.WriteURL(f.stateDir, srv.URL()); err != nil {
			return err
		}
		defer os.Remove(desktopweb.URLFile(f.stateDir))
		fmt.Fprintf(cmd.OutOrStdout(), "Self Service page: %s (open it with: pcm desktop open)\n", srv.URL())
	}
	closeNotify := func() error { return nil }
	if f.notify {
		cfg := notify.Config{Open: desktopweb.Open, Logger: f.log.Named("notify")}
		if srv != nil {
			cfg.PageURL = srv.URL()
		}
		native := notify.Native(cfg)
		closeNotify = native.Close // idempotent
		defer native.Close()
		forward = notify.Forward(native, cfg.Logger)
		show = append(show, forward)
	}
	var wg sync.WaitGroup
	pageErr := make(chan error, 1)
	if srv != nil {
		wg.Go(func() {
			if err := srv.Run(ctx); err != nil {
				pageErr <- err
				cancel()
			}
		})
	}
	f.onNotice = func(n agent.Notice) {
		for _, s := range show {
			s(n)
		}
	}
	err := d.Session(ctx)
	// Notifications first: a click no longer opens the page, which ends
	// next; an opening under way is cancelled.
	_ = closeNotify()
	cancel()
	wg.Wait()
	select {
	case perr := <-pageErr:
		return errors.Join(err, fmt.Errorf("the Self Service page: %w", perr))
	default:
	}
	return err
}

func newDesktopOpenCmd(f *desktopFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "open",
		Short: "Open the Self Service page of this user's desktop session in the browser (prints its address if it cannot)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.clientID == "" {
				f.clientID = defaultClientID()
			}
			stateDir := f.stateDir
			if stateDir == "" {
				stateDir = defaultDesktopStateDir(f.clientID)
			}
			u, err := desktopweb.ReadURL(stateDir)
			if err != nil {
				return err
			}
			if err := pageAnswers(cmd.Context(), u); err != nil {
				return fmt.Errorf("%w: its page does not answer (%w): start it with: pcm desktop", desktopweb.ErrNoSession, err)
			}
			if err := desktopweb.Open(cmd.Context(), u); err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "Cannot open a browser here; open this address in yours:\n%s\n", u)
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Self Service page opened in your browser")
			return nil
		},
	}
}

// pageAnswers checks that the session of page address u answers.
func pageAnswers(ctx context.Context, u string) error {
	base, token, ok := strings.Cut(u, "/?token=")
	if !ok {
		return fmt.Errorf("not a page address: %s", u)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/state", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
