package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/nopal-dev/nopal/codec"
)

// Errors returned by the registry; check them with errors.Is.
var (
	ErrNoHandlers    = errors.New("backend: component has no handler methods")
	ErrDuplicateName = errors.New("backend: route registered twice")
	ErrBadComponent  = errors.New("backend: not a component")
)

// BeforeHandler runs before every handler with the decoded argument. It may
// replace the context or the argument, or stop the request with an error.
type BeforeHandler func(ctx context.Context, in any) (context.Context, any, error)

// AfterHandler runs after every handler with its result and error, and may
// replace either.
type AfterHandler func(ctx context.Context, out any, err error) (any, error)

// Option configures how a component is registered.
type Option func(*regOptions)

type regOptions struct {
	name     string
	nameFunc func(string) string
	builtin  bool // see Builtin
}

// WithName sets the component's name (default: its type name, lower camel).
func WithName(name string) Option { return func(o *regOptions) { o.name = name } }

// WithNameFunc renames every method (default: lower camel).
func WithNameFunc(f func(string) string) Option { return func(o *regOptions) { o.nameFunc = f } }

var (
	typeOfError   = reflect.TypeFor[error]()
	typeOfContext = reflect.TypeFor[context.Context]()
	typeOfBytes   = reflect.TypeFor[[]byte]()
)

type handler struct {
	route   string // component.method, for messages
	method  reflect.Value
	argType reflect.Type // nil: no argument
	raw     bool         // argument is []byte
	// rawFn is the method as a plain function when its shape is
	// func(ctx, []byte) ([]byte, error): called without reflection.
	rawFn func(context.Context, []byte) ([]byte, error)
	// typed is the method as a direct call when its argument and result
	// are pointers (directTyped); outType is then the result's type.
	typed   typedFunc
	outType reflect.Type
	notify  bool // no return values
	// builtin: a route of the framework's own (Builtin), served and
	// documented but left out of Routes.
	builtin bool
}

// Registry maps routes to handlers. Register components before the server
// starts; after that it is read-only and safe for concurrent use.
type Registry struct {
	serverType string
	ser        codec.Serializer
	log        *slog.Logger

	mu sync.RWMutex
	// handlers is keyed by two-part routes (ServerType ""), so a parsed
	// route is looked up without building a string.
	handlers map[codec.Route]*handler
	before   []BeforeHandler
	after    []AfterHandler
}

// NewRegistry returns a registry for a server of type serverType whose
// payloads use ser. log may be nil (slog.Default()).
func NewRegistry(serverType string, ser codec.Serializer, log *slog.Logger) *Registry {
	if ser == nil {
		ser = codec.JSON{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Registry{serverType: serverType, ser: ser, log: log, handlers: make(map[codec.Route]*handler)}
}

// Serializer is the serializer the registry decodes and encodes payloads with.
func (r *Registry) Serializer() codec.Serializer { return r.ser }

// ServerType is the type of the server the registry belongs to.
func (r *Registry) ServerType() string { return r.serverType }

// Before adds a pipeline step that runs before every handler.
func (r *Registry) Before(f BeforeHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.before = append(r.before, f)
}

// After adds a pipeline step that runs after every handler.
func (r *Registry) After(f AfterHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.after = append(r.after, f)
}

// Register adds the handler methods of component c. A component or method
// name that does not make a valid two-part route (codec.ParseRoute) fails
// with ErrBadComponent, wrapping codec.ErrInvalidRoute.
func (r *Registry) Register(c any, opts ...Option) error {
	o := regOptions{nameFunc: lowerFirst}
	for _, opt := range opts {
		opt(&o)
	}
	v := reflect.ValueOf(c)
	if !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return fmt.Errorf("%w: %T", ErrBadComponent, c)
	}
	t := v.Type()
	if o.name == "" {
		o.name = lowerFirst(reflect.Indirect(v).Type().Name())
	}
	if o.name == "" || strings.Contains(o.name, ".") {
		return fmt.Errorf("%w: bad name %q for %T", ErrBadComponent, o.name, c)
	}
	found := map[codec.Route]*handler{}
	for i := range t.NumMethod() {
		m := t.Method(i)
		h, ok := handlerOf(m, v, v.Method(i))
		if !ok {
			continue
		}
		h.route = o.name + "." + o.nameFunc(m.Name)
		h.builtin = o.builtin
		// A name no client could send (a part that is empty, or holds
		// a '.', a space, a NATS wildcard…) is refused here rather than
		// registered unreachable.
		route, err := codec.ParseRoute(h.route)
		if err != nil || route.ServerType != "" {
			if err == nil {
				err = fmt.Errorf("%w %q: a method name may not hold '.'", codec.ErrInvalidRoute, h.route)
			}
			return fmt.Errorf("%w: %T: %w", ErrBadComponent, c, err)
		}
		if _, dup := found[route]; dup {
			return fmt.Errorf("%w: %s (two methods of %T)", ErrDuplicateName, h.route, c)
		}
		found[route] = h
	}
	if len(found) == 0 {
		return fmt.Errorf("%w: %T", ErrNoHandlers, c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for route := range found {
		if _, dup := r.handlers[route]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicateName, route.Short())
		}
	}
	for route, h := range found {
		r.handlers[route] = h
	}
	return nil
}

func handlerOf(m reflect.Method, recv, fn reflect.Value) (*handler, bool) {
	mt := m.Type // includes the receiver
	if !m.IsExported() || mt.NumIn() < 2 || mt.NumIn() > 3 || mt.In(1) != typeOfContext {
		return nil, false
	}
	h := &handler{method: fn}
	if mt.NumIn() == 3 {
		at := mt.In(2)
		if at != typeOfBytes && at.Kind() != reflect.Pointer {
			return nil, false
		}
		h.argType, h.raw = at, at == typeOfBytes
	}
	if f := directRaw(m, recv); f != nil {
		h.rawFn = f
	} else if f, ok := fn.Interface().(func(context.Context, []byte) ([]byte, error)); ok {
		h.rawFn = f
	}
	switch mt.NumOut() {
	case 0:
		h.notify = true
	case 2:
		if mt.Out(1) != typeOfError {
			return nil, false
		}
	default:
		return nil, false
	}
	if !h.raw {
		if h.typed = directTyped(m, recv); h.typed != nil && !h.notify {
			h.outType = mt.Out(0)
		}
	}
	return h, true
}

// Routes lists the registered routes (component.method), sorted; the
// built-in ones (Builtin) are left out.
func (r *Registry) Routes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.handlers))
	for k, h := range r.handlers {
		if !h.builtin {
			out = append(out, k.Short())
		}
	}
	sort.Strings(out)
	return out
}

// Local reports whether route names this server: a route that
// codec.ParseRoute accepts, of two parts, or of three whose first is this
// server's type. It returns the component.method part (a substring of
// route). It is LocalRoute for a route not parsed yet.
func (r *Registry) Local(route string) (string, bool) {
	rt, err := codec.ParseRoute(route)
	if err != nil || !r.LocalRoute(rt) {
		return "", false
	}
	return route[len(route)-len(rt.Component)-1-len(rt.Method):], true
}

// LocalRoute reports whether rt names this server: it has no server type,
// or this server's.
func (r *Registry) LocalRoute(rt codec.Route) bool { return rt.Local(r.serverType) }

// Has reports whether a handler serves route (two or three parts). It is
// HasRoute for a route not parsed yet: an invalid route has no handler.
func (r *Registry) Has(route string) bool {
	rt, err := codec.ParseRoute(route)
	return err == nil && r.HasRoute(rt)
}

// HasRoute reports whether a handler of this server serves rt.
func (r *Registry) HasRoute(rt codec.Route) bool { return r.lookup(rt) != nil }

// lookup returns the handler of rt, or nil when rt names another server
// type or no handler.
func (r *Registry) lookup(rt codec.Route) *handler {
	if !rt.Local(r.serverType) {
		return nil
	}
	rt.ServerType = ""
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.handlers[rt]
}

// Handle runs the handler of route with the serialized argument data and
// returns the serialized result. notify reports whether the handler is a
// notify handler (no result to send). Errors are *codec.Error values: a
// route that codec.ParseRoute rejects, that names another server type or
// that has no handler answers PIT-404. It is HandleRoute for a route not
// parsed yet.
func (r *Registry) Handle(ctx context.Context, route string, data []byte) (out []byte, notify bool, err error) {
	rt, err := codec.ParseRoute(route)
	if err != nil {
		return nil, false, notFound(route)
	}
	return r.handle(ctx, rt, route, data)
}

// HandleRoute is Handle for a parsed route: a frontend or the cluster
// parses a client's route once (codec.ParseRoute) and passes it on.
func (r *Registry) HandleRoute(ctx context.Context, rt codec.Route, data []byte) (out []byte, notify bool, err error) {
	return r.handle(ctx, rt, "", data)
}

// handle runs rt's handler; name is rt as the caller wrote it, for
// messages ("" = rt.String(), built only when a message needs it).
func (r *Registry) handle(ctx context.Context, rt codec.Route, name string, data []byte) (out []byte, notify bool, err error) {
	routeName := func() string {
		if name == "" {
			return rt.String()
		}
		return name
	}
	h := r.lookup(rt)
	if h == nil {
		return nil, false, notFound(routeName())
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("handler panicked", "route", routeName(), "panic", p, "stack", string(debug.Stack()))
			out, notify, err = nil, h.notify, codec.NewError(codec.CodeInternal, "internal error", nil)
		}
	}()
	res, err := r.call(ctx, h, data)
	if err != nil {
		return nil, h.notify, codec.AsError(err)
	}
	if h.notify {
		return nil, true, nil
	}
	out, err = r.ser.Marshal(res)
	if err != nil {
		return nil, false, codec.WrapError(codec.CodeInternal, fmt.Errorf("backend: encode result of %s: %w", routeName(), err))
	}
	return out, false, nil
}

func notFound(route string) *codec.Error {
	return codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal/handler: %s not found", route), nil)
}

// runAfter passes a handler's result and error through the after-hooks,
// in order.
func runAfter(ctx context.Context, after []AfterHandler, out any, err error) (any, error) {
	for _, a := range after {
		out, err = a(ctx, out, err)
	}
	return out, err
}

func (r *Registry) call(ctx context.Context, h *handler, data []byte) (any, error) {
	r.mu.RLock()
	before, after := r.before, r.after
	r.mu.RUnlock()
	if h.raw && h.rawFn != nil && len(before) == 0 {
		// The argument goes to the handler as is, never through an
		// interface (boxing the slice allocates). It is a copy: the
		// handler may keep it, data is the reader's.
		res, err := h.rawFn(ctx, append([]byte(nil), data...))
		return runAfter(ctx, after, res, err)
	}
	var arg any
	if h.argType != nil {
		if h.raw {
			arg = append([]byte(nil), data...)
		} else {
			p := reflect.New(h.argType.Elem())
			if err := r.ser.Unmarshal(data, p.Interface()); err != nil {
				return nil, codec.NewError(codec.CodeBadRequest, fmt.Sprintf("nopal/handler: %s: bad argument: %v", h.route, err), nil)
			}
			arg = p.Interface()
		}
	}
	for _, b := range before {
		var err error
		ctx, arg, err = b(ctx, arg)
		if err != nil {
			return nil, err
		}
	}
	if h.rawFn != nil {
		if b, ok := arg.([]byte); ok {
			res, err := h.rawFn(ctx, b)
			return runAfter(ctx, after, res, err)
		}
	}
	if h.typed != nil && (h.argType == nil || reflect.TypeOf(arg) == h.argType) {
		var in unsafe.Pointer
		if h.argType != nil {
			in = pointerOf(arg)
		}
		out, err := h.typed(ctx, in)
		var res any
		if !h.notify {
			res = reflect.NewAt(h.outType.Elem(), out).Interface()
		}
		return runAfter(ctx, after, res, err)
	}
	var args [2]reflect.Value
	args[0] = reflect.ValueOf(ctx)
	n := 1
	if h.argType != nil {
		args[1] = reflect.ValueOf(arg)
		if !args[1].IsValid() || !args[1].Type().AssignableTo(h.argType) {
			return nil, codec.NewError(codec.CodeInternal, fmt.Sprintf("nopal/handler: %s: pipeline returned %T", h.route, arg), nil)
		}
		n = 2
	}
	outs := h.method.Call(args[:n])
	var res any
	var err error
	if !h.notify {
		res = outs[0].Interface()
		if e := outs[1].Interface(); e != nil {
			err = e.(error)
		}
	}
	return runAfter(ctx, after, res, err)
}

func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError || unicode.IsLower(r) {
		return s
	}
	return string(unicode.ToLower(r)) + s[n:]
}
