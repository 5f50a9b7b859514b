// Package osservice registers pcm's long-running faces with the platform's
// service manager and runs them under it: systemd units on Linux, launchd
// daemons on macOS, services of the Service Control Manager on Windows
// (with recovery actions), plus the desktop face's start in each user's
// session (an XDG autostart entry, a LaunchAgent, the machine's Run key).
//
// What is written is rendered by pure functions of a Spec (SystemdUnit,
// LaunchdPlist, WindowsConfig, DesktopAutostart), so every platform's
// output is checked by unit tests on every platform; a Manager applies it
// on the platform it runs on. Run runs a service's body under the Windows
// service control protocol when the Service Control Manager started the
// process, and directly otherwise.
//
// It never decides what a service does: the caller's Run function is the
// service. It never logs: problems come back as errors wrapping the
// package's sentinels.
package osservice
