package backend_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
)

type BuyReq struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

type BuyRes struct {
	Total int `json:"total"`
}

// Shop is a component: its exported methods of handler shape are routes.
type Shop struct{}

// Buy is a request handler: "shop.buy".
func (Shop) Buy(ctx context.Context, in *BuyReq) (*BuyRes, error) {
	if in.Qty <= 0 {
		return nil, codec.NewError("SHOP-1", "quantity must be positive", map[string]string{"item": in.Item})
	}
	return &BuyRes{Total: 5 * in.Qty}, nil
}

// Catalog is a request handler without argument: "shop.catalog".
func (Shop) Catalog(ctx context.Context) ([]string, error) { return []string{"sword", "shield"}, nil }

// Browse is a notify handler: "shop.browse". Notifies have no reply.
func (Shop) Browse(ctx context.Context, in *BuyReq) {}

func Example() {
	reg := backend.NewRegistry("game", codec.JSON{}, slog.New(slog.DiscardHandler))
	if err := reg.Register(Shop{}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reg.Routes())

	ctx := context.Background()
	out, _, err := reg.Handle(ctx, "game.shop.buy", []byte(`{"item":"sword","qty":3}`))
	fmt.Println(string(out), err)

	out, _, err = reg.Handle(ctx, "shop.catalog", nil)
	fmt.Println(string(out), err)

	out, notify, err := reg.Handle(ctx, "shop.browse", []byte(`{"item":"sword"}`))
	fmt.Println(out == nil, notify, err)
	// Output:
	// [shop.browse shop.buy shop.catalog]
	// {"total":15} <nil>
	// ["sword","shield"] <nil>
	// true true <nil>
}

// Handle's errors are *codec.Error values, ready to send to the client.
func ExampleRegistry_Handle_errors() {
	reg := backend.NewRegistry("game", nil, slog.New(slog.DiscardHandler))
	_ = reg.Register(Shop{})
	ctx := context.Background()

	for _, req := range []struct{ route, data string }{
		{"shop.buy", `{"item":"sword","qty":0}`}, // the handler's own error
		{"shop.buy", `{"item":`},                 // bad argument
		{"shop.sell", `{}`},                      // unknown route
	} {
		_, _, err := reg.Handle(ctx, req.route, []byte(req.data))
		var ce *codec.Error
		if errors.As(err, &ce) {
			payload, _ := codec.EncodeError(reg.Serializer(), ce)
			fmt.Println(ce.Code, string(payload))
		}
	}
	// Output:
	// SHOP-1 {"code":"SHOP-1","msg":"quantity must be positive","metadata":{"item":"sword"}}
	// PIT-400 {"code":"PIT-400","msg":"nopal/handler: shop.buy: bad argument: unexpected end of JSON input"}
	// PIT-404 {"code":"PIT-404","msg":"nopal/handler: shop.sell not found"}
}

func ExampleRegistry_Before() {
	reg := backend.NewRegistry("game", nil, slog.New(slog.DiscardHandler))
	_ = reg.Register(Shop{})
	reg.Before(func(ctx context.Context, in any) (context.Context, any, error) {
		if buy, ok := in.(*BuyReq); ok && buy.Item == "dragon" {
			return ctx, nil, codec.NewError("SHOP-2", "not for sale", nil)
		}
		return ctx, in, nil
	})

	_, _, err := reg.Handle(context.Background(), "shop.buy", []byte(`{"item":"dragon","qty":1}`))
	fmt.Println(err)
	// Output:
	// SHOP-2: not for sale
}

func ExampleRegistry_After() {
	reg := backend.NewRegistry("game", nil, slog.New(slog.DiscardHandler))
	_ = reg.Register(Shop{})
	// Hide internal errors from clients.
	reg.After(func(ctx context.Context, out any, err error) (any, error) {
		var ce *codec.Error
		if err != nil && !errors.As(err, &ce) {
			return nil, codec.NewError(codec.CodeInternal, "try again later", nil)
		}
		return out, err
	})
	reg.After(func(ctx context.Context, out any, err error) (any, error) {
		if res, ok := out.(*BuyRes); ok {
			res.Total -= 1 // discount day
		}
		return out, err
	})

	out, _, err := reg.Handle(context.Background(), "shop.buy", []byte(`{"item":"shield","qty":2}`))
	fmt.Println(string(out), err)
	// Output:
	// {"total":9} <nil>
}

func ExampleWithName() {
	reg := backend.NewRegistry("game", nil, slog.New(slog.DiscardHandler))
	_ = reg.Register(Shop{}, backend.WithName("store"))
	_ = reg.Register(Shop{}, backend.WithName("market"), backend.WithNameFunc(strings.ToUpper))
	err := reg.Register(Shop{}, backend.WithName("store"))
	fmt.Println(reg.Routes())
	fmt.Println(errors.Is(err, backend.ErrDuplicateName))
	// Output:
	// [market.BROWSE market.BUY market.CATALOG store.browse store.buy store.catalog]
	// true
}

func ExampleRegistry_Local() {
	reg := backend.NewRegistry("game", nil, slog.New(slog.DiscardHandler))
	_ = reg.Register(Shop{})
	for _, route := range []string{"shop.buy", "game.shop.buy", "chat.room.join", "shop"} {
		local, ok := reg.Local(route)
		fmt.Printf("%-15s local=%-5v %-9q has=%v\n", route, ok, local, reg.Has(route))
	}
	// Output:
	// shop.buy        local=true  "shop.buy" has=true
	// game.shop.buy   local=true  "shop.buy" has=true
	// chat.room.join  local=false ""        has=false
	// shop            local=false ""        has=false
}
