//go:build darwin

package notify

import "os/exec"

// notifyCommand is a Notification Center notification: through
// terminal-notifier when a click should open pageURL and it is installed
// (its -open opens the page), else through osascript, whose notifications
// cannot do anything when clicked; the title and the body are arguments
// of the script, never its text.
func notifyCommand(n Notification, pageURL string) (name string, args, env []string) {
	if pageURL != "" {
		if _, err := exec.LookPath("terminal-notifier"); err == nil {
			return "terminal-notifier", []string{"-title", n.Title, "-message", n.Body, "-open", pageURL}, nil
		}
	}
	return "osascript", []string{"-e", "on run argv", "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
		"-e", "end run", n.Title, n.Body}, nil
}
