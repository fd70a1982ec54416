package frontend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// Client addresses behind a load balancer: the PROXY protocol on the
// acceptors' sockets, X-Forwarded-For and Forwarded on WebSocket upgrades.
// Either way the real address is what the connection's RemoteAddr returns,
// so the session, the logs and everything else that asks see it.

// ProxyHeaderTimeout bounds the wait for the start of a PROXY header on a
// new connection (see WithProxyProtocol). A connection that has sent
// nothing by then is served as one without a header.
const ProxyHeaderTimeout = 5 * time.Second

// WithProxyProtocol makes the acceptor read a PROXY protocol header (v1 or
// v2, as HAProxy, AWS NLB, GCP and most TCP load balancers send it) at the
// start of every connection, with the library github.com/pires/go-proxyproto.
// Only a peer whose address is in trusted (your load balancers) is believed:
//
//   - from a trusted peer, a valid header gives the connection the client's
//     address; a header without one (v2 LOCAL, as in health checks, or v1
//     UNKNOWN) or no header at all leaves the peer's own address. A
//     load balancer configured to send headers sends one on every
//     connection, and a Pitaya packet never starts like a header, so no
//     client can pass as one: trust only peers that always send a header.
//   - from any other peer a header is read and ignored: the connection is
//     served with its socket address, and can claim no other.
//   - a malformed header, from any peer, closes that connection as bad input
//     (logged, counted in Stats.Malformed); the others go on.
//
// The header is read on the connection's own goroutine, at most
// ProxyHeaderTimeout, before the connection reaches the frontend: a slow
// peer never holds up the others. With WithTLS the header comes first, then
// the TLS handshake, as load balancers in TCP mode send them.
//
// It applies to the TCP acceptor and, through WithWSOptions, to the
// WebSocket acceptor (a load balancer in TCP mode in front of it; behind an
// HTTP proxy use WithTrustedProxies instead). Listen fails when trusted is
// empty or holds an invalid prefix; to trust every peer, pass 0.0.0.0/0 and
// ::/0.
func WithProxyProtocol(trusted ...netip.Prefix) AcceptorOption {
	return func(o *acceptorOptions) {
		o.proxy = &proxyOptions{trusted: slices.Clone(trusted)}
	}
}

type proxyOptions struct {
	trusted []netip.Prefix
	policy  proxyproto.ConnPolicyFunc // made by resolve
}

// resolve checks the trusted prefixes and builds the library's policy:
// USE (the header, if any) for trusted peers, IGNORE for the others.
func (p *proxyOptions) resolve() error {
	set, err := newPrefixSet("WithProxyProtocol", p.trusted)
	if err != nil {
		return err
	}
	ranges := make([]string, len(set))
	for i, pfx := range set {
		ranges[i] = pfx.String()
	}
	policy, err := proxyproto.PolicyFromRanges(ranges, proxyproto.USE, proxyproto.IGNORE)
	if err != nil {
		return fmt.Errorf("frontend: WithProxyProtocol: %w", err)
	}
	p.policy = policy
	return nil
}

// listener wraps a bound listener with the acceptor's PROXY protocol and
// TLS layers, in the order they come on the wire.
func (o *acceptorOptions) listener(ln net.Listener) net.Listener {
	if o.proxy != nil {
		ln = &proxyproto.Listener{Listener: ln, ConnPolicy: o.proxy.policy, ReadHeaderTimeout: ProxyHeaderTimeout}
	}
	if o.tls != nil {
		ln = tls.NewListener(ln, o.tls)
	}
	return ln
}

// readProxyHeader reads the PROXY header of c, a connection accepted by a
// listener made by listener, and returns what to write batches to: the
// bare socket when nothing sits between it and c (writev stays in use), c
// otherwise. A header error is kept by the library and returned by every
// read of c: the agent's first read closes the connection as bad input.
func readProxyHeader(c net.Conn) (w net.Conn) {
	inner := c
	if tc, ok := c.(*tls.Conn); ok {
		inner = tc.NetConn()
	}
	pc, ok := inner.(*proxyproto.Conn)
	if !ok {
		return c
	}
	// A read of nothing processes the header (waiting at most
	// ProxyHeaderTimeout) and reports its error, without consuming a byte.
	if _, err := pc.Read(nil); err != nil || inner != c {
		return c
	}
	return pc.Raw()
}

// prefixSet is a validated set of trusted prefixes.
type prefixSet []netip.Prefix

func newPrefixSet(option string, prefixes []netip.Prefix) (prefixSet, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("frontend: %s needs at least one trusted prefix (0.0.0.0/0 and ::/0 trust every peer)", option)
	}
	set := make(prefixSet, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("frontend: %s: invalid prefix %q", option, p.String())
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("frontend: %s: prefix %s has a zone", option, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are matched
			// unmapped.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		set = append(set, p.Masked())
	}
	return set, nil
}

func (s prefixSet) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// The headers WithForwardedHeader takes.
const (
	// HeaderXForwardedFor is X-Forwarded-For: a comma-separated list of
	// addresses, each proxy appending its client's.
	HeaderXForwardedFor = "X-Forwarded-For"
	// HeaderForwarded is RFC 7239's Forwarded: elements such as
	// for=192.0.2.60;proto=https, each proxy appending one.
	HeaderForwarded = "Forwarded"
)

// WithTrustedProxies takes the client's address of a WebSocket connection
// from the header its HTTP proxies write (X-Forwarded-For by default, see
// WithForwardedHeader), when the upgrade request comes from a peer in
// prefixes; the header of any other peer is ignored and the connection
// keeps its socket address.
//
// The header's addresses are read from the right: the first one not in
// prefixes is the client's (the ones to its left were written by the
// client itself and are never believed, nor even parsed). When every
// address is in prefixes, the leftmost is taken. A request from a trusted
// peer without the header keeps the peer's address, and so does one whose
// address is "unknown" or obfuscated (Forwarded's for=_hidden). A malformed
// address where one is read refuses that upgrade with 400 Bad Request and
// closes that connection. The port is the header's when it gives one
// (Forwarded's for="[2001:db8::1]:4711"), 0 otherwise.
//
// Put every proxy of the chain in prefixes (the load balancer, a CDN's
// ranges): a proxy that is left out is taken for the client. Listen fails
// when prefixes is empty or holds an invalid prefix.
func WithTrustedProxies(prefixes ...netip.Prefix) WSOption {
	return func(a *WSAcceptor) {
		if a.fwd == nil {
			a.fwd = &forwarding{}
		}
		a.fwd.trusted, a.fwd.trustedSet = slices.Clone(prefixes), true
	}
}

// WithForwardedHeader names the header WithTrustedProxies reads:
// HeaderXForwardedFor (the default, written by nearly every proxy and
// load balancer) or HeaderForwarded. Only that header is read: a proxy
// appends to one of them and passes the other on as the client wrote it,
// so reading both would let a client choose its address. Listen fails for
// another name, or without WithTrustedProxies.
func WithForwardedHeader(name string) WSOption {
	return func(a *WSAcceptor) {
		if a.fwd == nil {
			a.fwd = &forwarding{}
		}
		a.fwd.header = name
	}
}

// forwarding is the WebSocket acceptor's reading of forwarding headers.
type forwarding struct {
	trusted    []netip.Prefix
	trustedSet bool
	header     string
	set        prefixSet // made by resolve
}

func (f *forwarding) resolve() error {
	if !f.trustedSet {
		return errors.New("frontend: WithForwardedHeader needs WithTrustedProxies")
	}
	switch http.CanonicalHeaderKey(f.header) {
	case "", HeaderXForwardedFor:
		f.header = HeaderXForwardedFor
	case HeaderForwarded:
		f.header = HeaderForwarded
	default:
		return fmt.Errorf("frontend: WithForwardedHeader(%q): want %q or %q", f.header, HeaderXForwardedFor, HeaderForwarded)
	}
	set, err := newPrefixSet("WithTrustedProxies", f.trusted)
	if err != nil {
		return err
	}
	f.set = set
	return nil
}

// errForwarded marks a malformed forwarding header.
var errForwarded = errors.New("malformed forwarding header")

// clientAddr returns the client's address for r, or nil to keep the
// socket's (an untrusted peer, no header, an unknown address), or an
// error wrapping errForwarded for a malformed header.
func (f *forwarding) clientAddr(r *http.Request) (net.Addr, error) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !f.set.contains(peer.Addr()) {
		return nil, nil
	}
	values := r.Header.Values(f.header)
	if len(values) == 0 {
		return nil, nil
	}
	var hops []string
	if f.header == HeaderForwarded {
		if hops, err = forwardedFor(values); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errForwarded, f.header, err)
		}
	} else {
		hops = xForwardedFor(values)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ap, known, err := parseNode(hops[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errForwarded, f.header, err)
		}
		if !known {
			return nil, nil
		}
		if i == 0 || !f.set.contains(ap.Addr()) {
			return net.TCPAddrFromAddrPort(ap), nil
		}
	}
	return nil, nil
}

// xForwardedFor returns the entries of the X-Forwarded-For values in
// order, all lines joined; empty entries are skipped.
func xForwardedFor(values []string) []string {
	var hops []string
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				hops = append(hops, e)
			}
		}
	}
	return hops
}

// forwardedFor returns the for= value of each element of the Forwarded
// values (RFC 7239), in order, "" for an element without one; empty
// elements are skipped.
func forwardedFor(values []string) ([]string, error) {
	var hops []string
	for _, v := range values {
		p := forwardedParser{s: v}
		for {
			p.skipSpace()
			if p.done() {
				break
			}
			if p.peek() == ',' {
				p.i++
				continue
			}
			hop, err := p.element()
			if err != nil {
				return nil, err
			}
			hops = append(hops, hop)
		}
	}
	return hops, nil
}

type forwardedParser struct {
	s string
	i int
}

func (p *forwardedParser) done() bool { return p.i >= len(p.s) }
func (p *forwardedParser) peek() byte { return p.s[p.i] }

func (p *forwardedParser) skipSpace() {
	for !p.done() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

// element reads pairs up to the end of an element (a ',' or the end) and
// returns its for= value.
func (p *forwardedParser) element() (string, error) {
	var hop string
	seen := false
	for {
		p.skipSpace()
		start := p.i
		for !p.done() && isTokenChar(p.peek()) {
			p.i++
		}
		name := p.s[start:p.i]
		if name == "" || p.done() || p.peek() != '=' {
			return "", fmt.Errorf("bad pair at %q", p.s[start:])
		}
		p.i++
		value, err := p.value()
		if err != nil {
			return "", err
		}
		if strings.EqualFold(name, "for") {
			if seen {
				return "", errors.New("two for= in one element")
			}
			hop, seen = value, true
		}
		p.skipSpace()
		if p.done() {
			return hop, nil
		}
		switch p.peek() {
		case ',':
			p.i++
			return hop, nil
		case ';':
			p.i++
		default:
			return "", fmt.Errorf("unexpected %q", p.s[p.i:])
		}
	}
}

// value reads a token or a quoted string.
func (p *forwardedParser) value() (string, error) {
	if p.done() {
		return "", errors.New("empty value")
	}
	if p.peek() != '"' {
		start := p.i
		// Tokens, leniently: a:b and [a:b] unquoted are read too.
		for !p.done() && (isTokenChar(p.peek()) || strings.IndexByte(":[]", p.peek()) >= 0) {
			p.i++
		}
		if p.i == start {
			return "", fmt.Errorf("bad value at %q", p.s[start:])
		}
		return p.s[start:p.i], nil
	}
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.peek()
		p.i++
		switch c {
		case '"':
			if b.Len() == 0 {
				return "", errors.New("empty value")
			}
			return b.String(), nil
		case '\\':
			if p.done() {
				return "", errors.New("unterminated quoted string")
			}
			c = p.peek()
			p.i++
		}
		b.WriteByte(c)
	}
	return "", errors.New("unterminated quoted string")
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode reads one address of a forwarding header: 192.0.2.60,
// 192.0.2.60:4711, 2001:db8::1, [2001:db8::1], [2001:db8::1]:4711 (an
// obfuscated port, :_x, counts as none). known is false for "unknown",
// obfuscated identifiers (_hidden) and "" (a Forwarded element without for=).
func parseNode(s string) (ap netip.AddrPort, known bool, err error) {
	if s == "" || strings.EqualFold(s, "unknown") || strings.HasPrefix(s, "_") {
		return netip.AddrPort{}, false, nil
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.AddrPort{}, false, fmt.Errorf("bad address %q", s)
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' || len(rest) == 1 {
				return netip.AddrPort{}, false, fmt.Errorf("bad address %q", s)
			}
			port = rest[1:]
		}
	} else if strings.Count(s, ":") == 1 {
		host, port, _ = strings.Cut(s, ":")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, false, fmt.Errorf("bad address %q", s)
	}
	var n uint64
	if port != "" && !strings.HasPrefix(port, "_") {
		if n, err = strconv.ParseUint(port, 10, 16); err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("bad port in %q", s)
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)), true, nil
}
