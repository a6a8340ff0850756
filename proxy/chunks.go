package proxy

import (
	"errors"
	"reflect"

	"github.com/emersion/go-smtp"
)

// errChunkShort ends a BDAT message whose chunk ended before its size.
var errChunkShort = errors.New("a BDAT chunk ended before the size its command announced")

// go-smtp reads a BDAT chunk with an io.LimitReader and takes an early end
// of the stream for the end of the chunk: a "BDAT n LAST" whose chunk is
// cut short by a closed connection, a half-close or, on a STARTTLS
// session, a TLS close_notify with the TCP connection left open, reaches
// Data as a whole message. Nothing below TLS can see the close_notify, and
// go-smtp tells its Session neither the announced sizes nor the short
// read. It does add each chunk's announced size to the connection's
// bytesReceived before it ends the body's pipe, and resets that count only
// after Data returned. A message is therefore whole only when Data read
// as many bytes as that count: announcedField reads it.
//
// The field is go-smtp's own; a version that renames or retypes it is
// caught at start (checkChunkCount) and by TestChunkCountReadable, and
// until then every BDAT message is refused rather than trusted.
var announcedField = func() []int {
	f, ok := reflect.TypeFor[smtp.Conn]().FieldByName("bytesReceived")
	if !ok || f.Type.Kind() != reflect.Int64 {
		return nil
	}
	return f.Index
}()

// errChunkCountUnreadable is the start-up error of a go-smtp whose BDAT
// byte count sealgate cannot read.
var errChunkCountUnreadable = errors.New("proxy: this go-smtp version has no readable BDAT byte count (smtp.Conn.bytesReceived); BDAT messages could not be checked for truncation")

func checkChunkCount() error {
	if announcedField == nil {
		return errChunkCountUnreadable
	}
	return nil
}

// announcedBytes is the sum of the sizes of the BDAT chunks go-smtp has
// passed on for the message in progress. It is read by the goroutine that
// runs Data once the body's pipe reported its end: go-smtp updated the
// count before it closed the pipe, and the close orders the two.
func announcedBytes(c *smtp.Conn) (int64, bool) {
	if announcedField == nil || c == nil {
		return 0, false
	}
	return reflect.ValueOf(c).Elem().FieldByIndex(announcedField).Int(), true
}

// chunksWhole is the end-of-message check of a BDAT message: Data must
// have read every byte the client's BDAT commands announced.
func chunksWhole(c *smtp.Conn, read int64) error {
	want, ok := announcedBytes(c)
	if !ok || read != want {
		return errChunkShort
	}
	return nil
}
