package codec

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Dictionary maps routes to 2-byte codes that clients and server use instead
// of the route string (the handshake sends it to the client), and interns the
// route strings the server knows so decoding does not allocate for them.
// A Dictionary is immutable once built and safe for concurrent use. A nil
// *Dictionary compresses nothing.
type Dictionary struct {
	codes  map[string]uint16
	routes map[uint16]string
	known  map[string]string
}

// NewDictionary builds a dictionary from route→code pairs (codes must be
// unique) and extra known routes that are interned but not compressed.
func NewDictionary(codes map[string]uint16, known ...string) (*Dictionary, error) {
	d := &Dictionary{
		codes:  maps.Clone(codes),
		routes: make(map[uint16]string, len(codes)),
		known:  make(map[string]string, len(codes)+len(known)),
	}
	if d.codes == nil {
		d.codes = map[string]uint16{}
	}
	for r, c := range codes {
		if len(r) > 255 {
			return nil, fmt.Errorf("%w: %q", ErrRouteTooLong, r)
		}
		if other, dup := d.routes[c]; dup {
			return nil, fmt.Errorf("codec: routes %q and %q share code %d", other, r, c)
		}
		d.routes[c] = r
		d.known[r] = r
	}
	for _, r := range known {
		d.known[r] = r
	}
	return d, nil
}

// NumberRoutes gives each route a code from 1 on, in sorted order, so every
// server of a cluster that registers the same routes agrees on them.
func NumberRoutes(routes []string) map[string]uint16 {
	rs := append([]string(nil), routes...)
	sort.Strings(rs)
	out := make(map[string]uint16, len(rs))
	for _, r := range rs {
		if _, ok := out[r]; !ok {
			out[r] = uint16(len(out) + 1)
		}
	}
	return out
}

// ServerDictionary is the dictionary of a server of type serverType whose
// handlers have routes (two-part: "component.method"): the codes given,
// plus, with number, a code for every route (NumberRoutes) that given does
// not name, on codes given does not use. Clients may send each route in
// its two- and three-part form.
func ServerDictionary(serverType string, routes []string, given map[string]uint16, number bool) (*Dictionary, error) {
	known := make([]string, 0, 2*len(routes))
	for _, r := range routes {
		known = append(known, r, serverType+"."+r)
	}
	codes := given
	if number {
		codes = mergeCodes(given, NumberRoutes(routes))
	}
	return NewDictionary(codes, known...)
}

// mergeCodes adds generated codes to the given ones, skipping routes and
// codes the given map already uses.
func mergeCodes(given, generated map[string]uint16) map[string]uint16 {
	out := make(map[string]uint16, len(given)+len(generated))
	used := map[uint16]bool{}
	for r, c := range given {
		out[r], used[c] = c, true
	}
	next := uint16(1)
	for _, r := range slices.Sorted(maps.Keys(generated)) {
		if _, ok := out[r]; ok {
			continue
		}
		for used[next] {
			next++
		}
		out[r], used[next] = next, true
	}
	return out
}

// Code returns the code of route, if it has one.
func (d *Dictionary) Code(route string) (uint16, bool) {
	if d == nil {
		return 0, false
	}
	c, ok := d.codes[route]
	return c, ok
}

// Route returns the route of a code, if it has one.
func (d *Dictionary) Route(code uint16) (string, bool) {
	if d == nil {
		return "", false
	}
	r, ok := d.routes[code]
	return r, ok
}

// Codes returns a copy of the route→code map, as sent in the handshake.
func (d *Dictionary) Codes() map[string]uint16 {
	if d == nil {
		return map[string]uint16{}
	}
	return maps.Clone(d.codes)
}

func (d *Dictionary) intern(b []byte) string {
	if d != nil {
		if s, ok := d.known[string(b)]; ok {
			return s
		}
	}
	return string(b)
}
