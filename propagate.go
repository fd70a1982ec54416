package nopal

import (
	"context"
	"log/slog"

	"github.com/nopal-dev/nopal/propagate"
)

// AddToPropagateCtx returns a copy of ctx carrying val under key to every
// handler and remote this context reaches on other servers: a client
// request a frontend forwards, RPC and RPCTo, ReliableRPC jobs, and on from
// there (the called handler's context carries the values on its own calls).
// It is Pitaya's function of the same name.
//
// The values travel as W3C baggage, so OpenTelemetry sees them too (see
// package propagate). val is anything encoding/json encodes, encoded now;
// GetFromPropagateCtx returns it as encoding/json decodes it (numbers
// float64, objects map[string]any), here as on every other server. key is a
// W3C token (letters, digits and !#$%&'*+-.^_`|~).
//
// All the values of a context are limited to 8 KiB of encoded header and
// 64 values (propagate.MaxSize, propagate.MaxValues). A value past the
// limit, with a bad key, or that JSON cannot encode is not added: ctx is
// returned as it was and a warning logged with slog.Default(). Use
// propagate.Add to get the error instead.
func AddToPropagateCtx(ctx context.Context, key string, val any) context.Context {
	out, err := propagate.Add(ctx, key, val)
	if err != nil {
		slog.Default().WarnContext(ctx, "nopal: propagated value dropped", "key", key, "err", err)
	}
	return out
}

// GetFromPropagateCtx returns the propagated value of key (see
// AddToPropagateCtx), or nil when ctx carries none. It is Pitaya's function
// of the same name; propagate.Decode reads a value into a type of your own.
func GetFromPropagateCtx(ctx context.Context, key string) any {
	return propagate.Get(ctx, key)
}
