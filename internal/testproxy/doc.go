// Package testproxy is a TCP proxy for tests. It stands between clients
// and a server so that a test can fail the network between them (Cut,
// Close), or let the server serve a request while its client does not see
// the reply yet (HoldNext), to run a race the same way every time.
package testproxy
