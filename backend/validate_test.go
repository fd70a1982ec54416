package backend_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-playground/validator/v10"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
)

type ShopItem struct {
	Count int `json:"count" validate:"gte=1"`
}

type ShopReq struct {
	Name         string     `json:"name" validate:"required"`
	Email        string     `json:"email" validate:"omitempty,email"`
	SoftCurrency int        `json:"softCurrency" validate:"gte=0,lte=1000"`
	Items        []ShopItem `json:"items" validate:"dive"`
	NoJSON       int        `validate:"lte=5"`
}

type shop struct{ ran int }

func (s *shop) Buy(_ context.Context, in *ShopReq) (*ShopReq, error) { s.ran++; return in, nil }
func (s *shop) Raw(_ context.Context, in []byte) ([]byte, error)     { s.ran++; return in, nil }
func (s *shop) Count(_ context.Context, in *int) (*int, error)       { s.ran++; return in, nil }
func (s *shop) Proto(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	s.ran++
	return in, nil
}

func TestValidatorPipeline(t *testing.T) {
	reg := backend.NewRegistry("shop", codec.JSON{}, nil)
	v := backend.NewValidator()
	reg.Before(v.Validate)
	s := &shop{}
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("valid", func(t *testing.T) {
		out, _, err := reg.Handle(ctx, "shop.buy", []byte(`{"name":"ana","email":"a@b.co","softCurrency":10,"items":[{"count":2}]}`))
		if err != nil || len(out) == 0 {
			t.Fatalf("valid request: %s, %v", out, err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		before := s.ran
		_, _, err := reg.Handle(ctx, "shop.buy", []byte(`{"email":"nope","softCurrency":1001,"items":[{"count":1},{"count":0}],"NoJSON":9}`))
		var ce *codec.Error
		if !errors.As(err, &ce) {
			t.Fatalf("got %v (%T), want a *codec.Error", err, err)
		}
		if s.ran != before {
			t.Error("the handler ran")
		}
		if ce.Code != codec.CodeBadRequest {
			t.Errorf("code %q, want PIT-400", ce.Code)
		}
		want := map[string]string{
			"name":           "required",
			"email":          "email",
			"softCurrency":   "lte=1000",
			"items[1].count": "gte=1",
			"NoJSON":         "lte=5",
		}
		if !maps(ce.Metadata, want) {
			t.Errorf("metadata %v, want %v", ce.Metadata, want)
		}
		// Pitaya's message: the validator's, with Go names.
		const msg = "Key: 'ShopReq.Name' Error:Field validation for 'Name' failed on the 'required' tag\n" +
			"Key: 'ShopReq.Email' Error:Field validation for 'Email' failed on the 'email' tag\n" +
			"Key: 'ShopReq.SoftCurrency' Error:Field validation for 'SoftCurrency' failed on the 'lte' tag\n" +
			"Key: 'ShopReq.Items[1].Count' Error:Field validation for 'Count' failed on the 'gte' tag\n" +
			"Key: 'ShopReq.NoJSON' Error:Field validation for 'NoJSON' failed on the 'lte' tag"
		if ce.Message != msg {
			t.Errorf("message\n%s\nwant\n%s", ce.Message, msg)
		}
		var fields validator.ValidationErrors
		if !errors.As(err, &fields) || len(fields) != 5 {
			t.Errorf("the error does not unwrap to the validator's 5 errors: %v", fields)
		}
		// What a client receives.
		b, _ := codec.EncodeError(codec.JSON{}, ce)
		back, err := codec.DecodeError(codec.JSON{}, b)
		if err != nil || back.Code != codec.CodeBadRequest || !maps(back.Metadata, want) {
			t.Errorf("encoded %s: %+v, %v", b, back, err)
		}
	})
	t.Run("not structs", func(t *testing.T) {
		before := s.ran
		for _, c := range []struct{ route, data string }{
			{"shop.raw", `anything`},
			{"shop.count", `3`},
			{"shop.proto", `{"value":"x"}`},
		} {
			if _, _, err := reg.Handle(ctx, c.route, []byte(c.data)); err != nil {
				t.Errorf("%s: %v", c.route, err)
			}
		}
		if s.ran != before+3 {
			t.Errorf("%d handlers ran, want 3", s.ran-before)
		}
	})
	t.Run("direct", func(t *testing.T) {
		for _, in := range []any{nil, (*ShopReq)(nil), 3, "x", ShopReq{Name: "ana"}, &wrapperspb.StringValue{}} {
			if _, got, err := v.Validate(ctx, in); err != nil || (got == nil) != (in == nil) {
				t.Errorf("Validate(%#v) = %v, %v", in, got, err)
			}
		}
		if _, _, err := v.Validate(ctx, ShopReq{}); codeOf(t, err).Code != codec.CodeBadRequest {
			t.Errorf("a struct value: %v", err)
		}
	})
}
