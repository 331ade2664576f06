// Package sdnotify tells systemd about the daemon's state (sd_notify(3)), for a unit of
// Type=notify: READY=1 once it serves, STOPPING=1 when it begins to stop.
package sdnotify

import (
	"net"
	"os"
)

// Ready and Stopping are the states limitd reports.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket $NOTIFY_SOCKET names (a path, or an abstract socket
// when it begins with '@', which Go's net package takes as such). It reports false, and no error, when the variable is unset:
// the daemon was not started by systemd with Type=notify (or NotifyAccess allows none).
func Notify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}
