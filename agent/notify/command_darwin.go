//go:build darwin

package notify

// notifyCommand is a Notification Center notification through osascript;
// the title and the body are arguments of the script, never its text.
func notifyCommand(n Notification) (string, []string) {
	return "osascript", []string{"-e", "on run argv", "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
		"-e", "end run", n.Title, n.Body}
}
