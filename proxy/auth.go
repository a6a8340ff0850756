package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// Users holds the accounts allowed to relay after AUTH: user name to
// bcrypt hash.
type Users map[string][]byte

// LoadUsers reads a file of "user:bcrypt-hash" lines; blank lines and
// lines starting with '#' are ignored. Errors name the file and line.
func LoadUsers(path string) (Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseUsers(path, data)
}

// ParseUsers parses the content of a users file named name.
func ParseUsers(name string, data []byte) (Users, error) {
	users := Users{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash", name, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash: %v", name, n, user, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q listed twice", name, n, user)
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// Check verifies a password. Unknown users cost as much as known ones.
func (u Users) Check(user, password string) bool {
	hash, ok := u[user]
	if !ok {
		// A fixed hash of a random password, so that timing does not
		// tell which users exist.
		hash = dummyHash
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return ok && err == nil
}

var dummyHash = []byte("$2a$10$7EqJtq98hPqEX7fNZaFWoO5ZfXwZ5p5J8pYyI9VhG8y6QAnr3ZKaO")

// errAuthFailed is go-smtp's 535 reply.
var errAuthFailed = smtp.ErrAuthFailed

// loginServer implements the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl no longer provides.
type loginServer struct {
	check    func(user, password string) error
	user     string
	state    int
	finished bool
}

func newLoginServer(check func(user, password string) error) sasl.Server {
	return &loginServer{check: check}
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	if s.finished {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	switch s.state {
	case 0:
		s.state = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		s.user = string(response)
		s.state = 2
		return []byte("Password:"), false, nil
	case 2:
		s.finished = true
		if err := s.check(s.user, string(response)); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	return nil, true, errors.New("LOGIN: unexpected state")
}

// errAuthLockedOut ends a connection after too many failed AUTH attempts
// from its address.
var errAuthLockedOut = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many failed authentication attempts, try again later"}

// guardedSASL runs a mechanism's steps, and so the password check, under
// the process-wide bound on concurrent checks, and hands failures to
// failed (which may pause and replace the error).
type guardedSASL struct {
	inner  sasl.Server
	sem    chan struct{}
	failed func(error) error
}

func (g *guardedSASL) Next(response []byte) ([]byte, bool, error) {
	g.sem <- struct{}{}
	challenge, done, err := g.inner.Next(response)
	<-g.sem
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// A response the mechanism cannot parse (go-sasl's
			// "invalid response"): go-smtp would answer 454, a
			// temporary failure, to what can never succeed (RFC 4954
			// §4: 501).
			err = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "malformed authentication response: " + err.Error()}
		}
		err = g.failed(err)
	}
	return challenge, done, err
}
