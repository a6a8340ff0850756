package proxy

import (
	"errors"
	"net"

	"sealgate/upstream"
)

// errClientGone is the end of a message whose client closed its side of
// the connection before the message was whole (see peerClosed).
var errClientGone = errors.New("the client closed the connection before the end of the message")

// peerClosed reports whether the client has closed its side of the
// connection (a FIN is waiting, with no data before it). It peeks at the
// TCP socket under any TLS layer, consuming nothing.
//
// go-smtp reads a BDAT chunk with an io.LimitReader and takes an early
// end of the stream for the end of the chunk: a "BDAT n LAST" whose chunk
// is cut short by a closed connection reaches Data as a whole message.
// The end of a message is therefore believed only while the client is
// still there; a client that closed before reading the reply to its
// message does not learn of the delivery either, and sends it again.
func peerClosed(c net.Conn) bool {
	return upstream.PeekSocket(c) == upstream.SocketClosed
}
