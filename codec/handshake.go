package codec

// HandshakeSys is what a client says about itself in its handshake.
type HandshakeSys struct {
	Platform    string `json:"platform"`
	LibVersion  string `json:"libVersion"`
	BuildNumber string `json:"clientBuildNumber"`
	Version     string `json:"clientVersion"`
	// Resume asks to take over a suspended session (a Nopal addition;
	// Pitaya servers ignore it).
	Resume *ResumeRequest `json:"resume,omitempty"`
}

// ResumeRequest is what a reconnecting client presents: the token of the
// session it had and how many pushes it received in that session.
type ResumeRequest struct {
	Token  string `json:"token"`
	Pushes uint64 `json:"pushes"`
}

// HandshakeRequest is the body of a client's Handshake packet.
type HandshakeRequest struct {
	Sys  HandshakeSys   `json:"sys"`
	User map[string]any `json:"user,omitempty"`
}

// HandshakeResponseSys is the server's part of a handshake response. Fields
// are in the order Pitaya writes them so the bytes match.
type HandshakeResponseSys struct {
	Dict       map[string]uint16 `json:"dict"`
	Heartbeat  int               `json:"heartbeat"`
	Serializer string            `json:"serializer"`
	// Resume is the token a client presents to resume this session after
	// its connection drops (a Nopal addition; Pitaya clients ignore it).
	Resume string `json:"resume,omitempty"`
	// Resumed reports that the handshake resumed the session the client
	// asked for; false means the client has a fresh session.
	Resumed bool `json:"resumed,omitempty"`
}

// HandshakeResponse is the body of the server's Handshake packet. A code of
// 200 accepts; 400 refuses, and the server closes the connection.
type HandshakeResponse struct {
	Code int                   `json:"code"`
	Sys  *HandshakeResponseSys `json:"sys,omitempty"`
}

// Handshake response codes.
const (
	HandshakeOK     = 200
	HandshakeFailed = 400
	// HandshakeUnavailable refuses a client because the server holds as
	// many connections as it may (a Nopal addition: clients treat any code
	// but 200 as a refusal).
	HandshakeUnavailable = 503
)
