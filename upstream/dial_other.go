//go:build !linux

package upstream

import (
	"errors"
	"syscall"
)

// setMark fails: SO_MARK exists on Linux only.
func setMark(syscall.RawConn, int) error {
	return errors.New("SO_MARK exists on Linux only")
}

// bindPort binds nothing: the socket is known once connected.
func bindPort(syscall.RawConn, string) (uint16, bool, error) { return 0, false, nil }
