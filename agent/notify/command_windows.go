//go:build windows

package notify

import (
	"encoding/base64"
	"fmt"
)

// toastApp is the application id the toast is shown under: Windows
// PowerShell's, registered on every Windows.
const toastApp = `{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe`

// pageURLEnv carries the page's address (and its secret) to the script:
// in its environment, which only the user can read, not on its command
// line.
const pageURLEnv = "PCM_PAGE_URL"

// notifyCommand is a toast through Windows PowerShell; the title and the
// body reach the script base64-encoded, never as its text. With pageURL,
// the toast is activated by protocol: a click on it, or on its Open
// button, has Windows open pageURL in the default browser.
func notifyCommand(n Notification, pageURL string) (name string, args, env []string) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	script := fmt.Sprintf(`$ErrorActionPreference = 'Stop'
$d = { param($s) [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($s)) }
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] | Out-Null
$t = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)
$x = $t.GetElementsByTagName('text')
$x.Item(0).AppendChild($t.CreateTextNode((& $d '%s'))) | Out-Null
$x.Item(1).AppendChild($t.CreateTextNode((& $d '%s'))) | Out-Null
$u = $env:%s
if ($u) {
  $toast = $t.DocumentElement
  $toast.SetAttribute('launch', $u)
  $toast.SetAttribute('activationType', 'protocol')
  $open = $t.CreateElement('action')
  $open.SetAttribute('content', 'Open')
  $open.SetAttribute('arguments', $u)
  $open.SetAttribute('activationType', 'protocol')
  $actions = $t.CreateElement('actions')
  $actions.AppendChild($open) | Out-Null
  $toast.AppendChild($actions) | Out-Null
}
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('%s').Show([Windows.UI.Notifications.ToastNotification]::new($t))`,
		b64(n.Title), b64(n.Body), pageURLEnv, toastApp)
	env = []string{pageURLEnv + "=" + pageURL} // "" too: none inherited
	return "powershell.exe", []string{"-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", script}, env
}
