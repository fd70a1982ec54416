package codec

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidRoute is wrapped by every error of [ParseRoute] and
// [ParseFullRoute]; check it with errors.Is.
var ErrInvalidRoute = errors.New("codec: invalid route")

// Route is a parsed client or server route: "svtype.component.method", or
// "component.method", which means "this server" (ServerType is then "").
//
// A Route from [ParseRoute] holds valid parts only; its zero value is not a
// valid route. Route is comparable and may be used as a map key.
type Route struct {
	ServerType string // "" for a two-part route
	Component  string
	Method     string
}

// ParseRoute parses a two-part ("component.method") or three-part
// ("svtype.component.method") route. It is the only route parser of the
// module: every part of a route becomes a token of a NATS subject
// ("<prefix>.rpc.<route>", "<prefix>.job.<svtype>.…"), so a route is parsed
// once, where it enters, and only routes that are safe there are accepted.
//
// The rule: a route has two or three parts separated by '.', none empty;
// the route is valid UTF-8, and no part holds
//
//   - '*' or '>', the NATS wildcards;
//   - '/' or '\\', path separators (a route may name a file or a URL path);
//   - whitespace (ASCII or Unicode: unicode.IsSpace), which ends a subject
//     token on the wire;
//   - a control character (U+0000–U+001F, U+007F–U+009F: unicode.IsControl);
//   - U+FFFD, the replacement character, which NATS takes as a sign of
//     corrupt input in subjects.
//
// Anything else is allowed, letters of any script included. A part may not
// hold '.', the separator, so a route of four or more parts is rejected
// rather than read as a method name with a dot. There is no length limit
// here (a client's route is at most 255 bytes on the wire; the bus refuses
// a subject longer than its control line, 4 KiB by default).
//
// Errors wrap [ErrInvalidRoute]. ParseRoute does not allocate on success:
// the parts are substrings of s, and String returns s again.
func ParseRoute(s string) (Route, error) {
	first, rest, ok := strings.Cut(s, ".")
	if !ok {
		return Route{}, routeError(s, "want component.method or svtype.component.method")
	}
	var r Route
	if second, third, ok := strings.Cut(rest, "."); ok {
		if strings.IndexByte(third, '.') >= 0 {
			return Route{}, routeError(s, "more than three parts")
		}
		r = Route{ServerType: first, Component: second, Method: third}
		if r.ServerType == "" {
			return Route{}, routeError(s, "empty server type")
		}
	} else {
		r = Route{Component: first, Method: rest}
	}
	switch {
	case r.Component == "":
		return Route{}, routeError(s, "empty component")
	case r.Method == "":
		return Route{}, routeError(s, "empty method")
	}
	if err := checkRouteBytes(s); err != nil {
		return Route{}, err
	}
	return r, nil
}

// ParseFullRoute is ParseRoute for a route that must name its server type
// (three parts), such as a server-to-server RPC or a reliable job.
func ParseFullRoute(s string) (Route, error) {
	r, err := ParseRoute(s)
	if err != nil {
		return Route{}, err
	}
	if r.ServerType == "" {
		return Route{}, routeError(s, "want svtype.component.method")
	}
	return r, nil
}

// checkRouteBytes applies ParseRoute's character rule to the whole route
// ('.' is allowed: the caller has split on it).
func checkRouteBytes(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '*' || c == '>' || c == '/' || c == '\\' {
				return routeError(s, fmt.Sprintf("%q not allowed", c))
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return routeError(s, "invalid UTF-8")
		case r == utf8.RuneError, unicode.IsSpace(r), unicode.IsControl(r):
			return routeError(s, fmt.Sprintf("%U not allowed", r))
		}
		i += n
	}
	return nil
}

func routeError(s, why string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidRoute, s, why)
}

// String is the route's canonical form: "svtype.component.method", or
// "component.method" when it has no server type. For a route from
// ParseRoute it is the string that was parsed.
func (r Route) String() string {
	if r.ServerType == "" {
		return r.Component + "." + r.Method
	}
	return r.ServerType + "." + r.Component + "." + r.Method
}

// Short is "component.method", the name a handler is registered under.
func (r Route) Short() string { return r.Component + "." + r.Method }

// Local reports whether the route names a server of type serverType: it
// has two parts ("this server"), or its server type is serverType.
func (r Route) Local(serverType string) bool {
	return r.ServerType == "" || r.ServerType == serverType
}
