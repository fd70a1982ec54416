package backend

import (
	"context"
	"reflect"
	"unsafe"
)

// rawFunc is the shape of a raw handler: bytes in, bytes out.
type rawFunc = func(context.Context, []byte) ([]byte, error)

// directRaw returns a raw handler's method bound to its component as a
// plain function call, or nil when it cannot.
//
// A method value that reflect makes (v.Method(i).Interface()) calls
// through reflect's trampoline on every call: the profile of the
// standalone echo showed its frame layout lookup, receiver copy and
// argument moves at about a third of the server's user time beyond the
// floor's. For a component registered as a pointer, the method
// expression m.Func is a real function whose first parameter is that
// pointer (*T: the method itself, or the wrapper Go generates for a value
// method in *T's method set). A *T parameter and an unsafe.Pointer one are
// passed alike (one pointer word, in a register or on the stack, traced
// by the collector either way), so the function is called as
// func(unsafe.Pointer, …) with the component's pointer: a direct call. The
// closure holds the pointer, which keeps the component alive.
func directRaw(m reflect.Method, recv reflect.Value) rawFunc {
	mt := m.Type
	if recv.Kind() != reflect.Pointer || mt.NumIn() != 3 || mt.In(0) != recv.Type() ||
		mt.In(1) != typeOfContext || mt.In(2) != typeOfBytes ||
		mt.NumOut() != 2 || mt.Out(0) != typeOfBytes || mt.Out(1) != typeOfError {
		return nil
	}
	fn := m.Func.Interface() // func(*T, context.Context, []byte) ([]byte, error)
	// An interface holding a func keeps the func value (a pointer to its
	// closure record) as its data word.
	closure := (*[2]unsafe.Pointer)(unsafe.Pointer(&fn))[1]
	var call func(unsafe.Pointer, context.Context, []byte) ([]byte, error)
	*(*unsafe.Pointer)(unsafe.Pointer(&call)) = closure
	p := recv.UnsafePointer()
	return func(ctx context.Context, in []byte) ([]byte, error) { return call(p, ctx, in) }
}

// typedFunc is a handler with a pointer argument (or none: nil) and a
// pointer result (or none), called directly; see directTyped.
type typedFunc = func(ctx context.Context, arg unsafe.Pointer) (unsafe.Pointer, error)

// directTyped is directRaw for the handlers Pitaya's users write most,
// func(ctx, *Req) (*Resp, error), and those without an argument or a
// result: every parameter and result but the context and the error is a
// pointer, passed as one pointer word. It returns nil for other shapes,
// which go through reflect.
func directTyped(m reflect.Method, recv reflect.Value) typedFunc {
	mt := m.Type
	if recv.Kind() != reflect.Pointer || mt.In(0) != recv.Type() || mt.NumIn() < 2 || mt.In(1) != typeOfContext {
		return nil
	}
	withArg := mt.NumIn() == 3
	if withArg && mt.In(2).Kind() != reflect.Pointer || mt.NumIn() > 3 {
		return nil
	}
	withResult := mt.NumOut() == 2
	if withResult && (mt.Out(0).Kind() != reflect.Pointer || mt.Out(1) != typeOfError) || mt.NumOut() == 1 || mt.NumOut() > 2 {
		return nil
	}
	fn := m.Func.Interface()
	closure := (*[2]unsafe.Pointer)(unsafe.Pointer(&fn))[1]
	p := recv.UnsafePointer()
	switch {
	case withArg && withResult:
		var call func(unsafe.Pointer, context.Context, unsafe.Pointer) (unsafe.Pointer, error)
		*(*unsafe.Pointer)(unsafe.Pointer(&call)) = closure
		return func(ctx context.Context, a unsafe.Pointer) (unsafe.Pointer, error) { return call(p, ctx, a) }
	case withResult:
		var call func(unsafe.Pointer, context.Context) (unsafe.Pointer, error)
		*(*unsafe.Pointer)(unsafe.Pointer(&call)) = closure
		return func(ctx context.Context, _ unsafe.Pointer) (unsafe.Pointer, error) { return call(p, ctx) }
	case withArg:
		var call func(unsafe.Pointer, context.Context, unsafe.Pointer)
		*(*unsafe.Pointer)(unsafe.Pointer(&call)) = closure
		return func(ctx context.Context, a unsafe.Pointer) (unsafe.Pointer, error) { call(p, ctx, a); return nil, nil }
	default:
		var call func(unsafe.Pointer, context.Context)
		*(*unsafe.Pointer)(unsafe.Pointer(&call)) = closure
		return func(ctx context.Context, _ unsafe.Pointer) (unsafe.Pointer, error) { call(p, ctx); return nil, nil }
	}
}

// pointerOf is the pointer an interface holding a pointer type carries.
func pointerOf(v any) unsafe.Pointer {
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]
}
