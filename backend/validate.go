package backend

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"

	"github.com/nopal-dev/nopal/codec"
)

// Validator is the struct-validation pipeline step, Pitaya's default
// "struct validation" pipeline: it checks a handler's or a remote's decoded
// argument against the `validate:"…"` tags of its struct
// (github.com/go-playground/validator/v10) before the handler runs.
//
//	v := backend.NewValidator()
//	registry.Before(v.Validate)
//
// nopal.Config.ValidateRequests adds one to the handlers and the remotes of
// an App, ahead of its own Before steps.
//
// An argument that fails is answered PIT-400 (codec.CodeBadRequest). The
// message is the validator's, with Go names, as Pitaya sends it: one line
// per failing field, "Key: 'HelloReq.Name' Error:Field validation for
// 'Name' failed on the 'required' tag". The metadata, a Nopal addition,
// names every failing field as the client wrote it (its JSON name, the path
// from the argument's root: "name", "items[0].count") with the rule it broke
// and its parameter ("required", "gte=0"). The error unwraps to the
// validator's validator.ValidationErrors.
//
// Arguments that are not structs (raw []byte, pointers to other types) and
// nil arguments pass untouched, as do structs without tags. A Validator is
// safe for concurrent use and caches what it learns of each type: make one
// and share it.
type Validator struct {
	v *validator.Validate
}

// NewValidator returns a Validator that names fields by their `json` tags
// in the metadata of its errors.
func NewValidator() *Validator {
	v := validator.New() // Pitaya's settings: the defaults
	v.RegisterTagNameFunc(jsonName)
	return &Validator{v: v}
}

// Engine is the underlying validator, to register custom rules and aliases
// on (before the server starts).
func (v *Validator) Engine() *validator.Validate { return v.v }

// Validate is a BeforeHandler: it returns ctx and in unchanged when in is
// valid, and a PIT-400 *codec.Error naming the failing fields otherwise.
func (v *Validator) Validate(ctx context.Context, in any) (context.Context, any, error) {
	if !structArg(in) {
		return ctx, in, nil
	}
	err := v.v.StructCtx(ctx, in)
	if err == nil {
		return ctx, in, nil
	}
	fields, ok := err.(validator.ValidationErrors)
	if !ok {
		// An InvalidValidationError: structArg let through what the
		// validator cannot take; nothing to check.
		return ctx, in, nil
	}
	e := codec.WrapError(codec.CodeBadRequest, validationError{fields})
	e.Metadata = make(map[string]string, len(fields))
	for _, f := range fields {
		rule := f.Tag()
		if p := f.Param(); p != "" {
			rule += "=" + p
		}
		e.Metadata[fieldPath(f.Namespace())] = rule
	}
	return ctx, nil, e
}

var typeOfTime = reflect.TypeFor[time.Time]()

// structArg reports whether in is a non-nil struct or pointer to one.
func structArg(in any) bool {
	t := reflect.TypeOf(in)
	if t == nil {
		return false
	}
	if t.Kind() == reflect.Pointer {
		if reflect.ValueOf(in).IsNil() {
			return false
		}
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != typeOfTime
}

// jsonName is a field's name in its `json` tag, "" (its Go name) when it
// has none.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// fieldPath drops the root type's name from a field's namespace
// ("HelloReq.items[0].count" → "items[0].count").
func fieldPath(ns string) string {
	if i := strings.IndexByte(ns, '.'); i >= 0 {
		return ns[i+1:]
	}
	return ns
}

// validationError is the validator's errors with Pitaya's message, which
// uses Go names (the validator's own uses the JSON names this Validator
// registers).
type validationError struct {
	fields validator.ValidationErrors
}

func (e validationError) Error() string {
	var b strings.Builder
	for i, f := range e.fields {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "Key: '%s' Error:Field validation for '%s' failed on the '%s' tag", f.StructNamespace(), f.StructField(), f.Tag())
	}
	return b.String()
}

func (e validationError) Unwrap() error { return e.fields }
