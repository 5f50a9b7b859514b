//go:build !windows && !darwin

package notify

// notifyCommand is a freedesktop notification: notify-send (libnotify).
func notifyCommand(n Notification) (string, []string) {
	urgency := "normal"
	if n.Urgent {
		urgency = "critical"
	}
	return "notify-send", []string{"--app-name=pcm", "--urgency=" + urgency, "--", n.Title, n.Body}
}
