package main

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/examples/pitayatest/protos"
	"github.com/nopal-dev/nopal/session"
)

// groupName is the one group of the test server: every bind joins it.
const groupName = "g1"

// pushFrontendType is the frontend type the server's broadcasts and
// pushes go to, as in Pitaya's server.
const pushFrontendType = "connector"

// Push routes, as Pitaya's server names them.
const (
	routeGroupMsg    = "route.test"
	routeGroupMsgPtr = "route.testptr"
	routeSendToUsers = "route.sendtousers"
)

// TestSvc holds the client handlers, routes "testsvc.<method lower-cased>"
// (or "<type>.testsvc.<method>" from a client of another server type).
type TestSvc struct {
	app          *nopal.App
	loopback     bool // an RPC to our own type is allowed (and answered here)
	pitayaErrors bool // Pitaya's texts in the errors of RPC
}

// TestRemoteSvc holds the remotes, routes
// "<type>.testremotesvc.<method lower-cased>" for RPC.
type TestRemoteSvc struct{}

// RPCRequest asks TestSendRPC to call Route with Data as the message.
type RPCRequest struct {
	Route string `json:"route"`
	Data  string `json:"data"`
}

// SendToUsersRequest asks TestSendToUsers to push Msg to UIDs.
type SendToUsersRequest struct {
	UIDs []string `json:"uids"`
	Msg  string   `json:"msg"`
}

// ---- remotes ----

// RPCTestRawPtrReturnsPtr answers "got <msg>".
func (*TestRemoteSvc) RPCTestRawPtrReturnsPtr(_ context.Context, in *protos.TestRequest) (*protos.TestResponse, error) {
	return &protos.TestResponse{Code: 200, Msg: "got " + in.GetMsg()}, nil
}

// RPCTestPtrReturnsPtr answers "got <msg>" too.
func (*TestRemoteSvc) RPCTestPtrReturnsPtr(_ context.Context, in *protos.TestRequest) (*protos.TestResponse, error) {
	return &protos.TestResponse{Code: 200, Msg: "got " + in.GetMsg()}, nil
}

// RPCTestReturnsError fails with a custom code and metadata.
func (*TestRemoteSvc) RPCTestReturnsError(context.Context, *protos.TestRequest) (*protos.TestResponse, error) {
	return nil, codec.NewError("PIT-433", "test error", map[string]string{"some": "meta"})
}

// RPCTestNoArgs takes nothing and answers "got nothing".
func (*TestRemoteSvc) RPCTestNoArgs(context.Context) (*protos.TestResponse, error) {
	return &protos.TestResponse{Code: 200, Msg: "got nothing"}, nil
}

// ---- handlers ----

// TestRequestKickUser kicks the session of this frontend bound to the uid
// in the payload.
func (t *TestSvc) TestRequestKickUser(ctx context.Context, uid []byte) (*protos.TestResponse, error) {
	s := t.app.Sessions().ByUID(string(uid))
	if s == nil {
		return nil, errSessionNotFound()
	}
	if err := s.Kick(ctx); err != nil {
		return nil, err
	}
	return &protos.TestResponse{Code: 200, Msg: "ok"}, nil
}

// TestRequestKickMe kicks the caller (from a backend too: the kick goes to
// its frontend).
func (t *TestSvc) TestRequestKickMe(ctx context.Context) (*protos.TestResponse, error) {
	s := session.FromContext(ctx)
	if s == nil {
		return nil, errSessionNotFound()
	}
	if err := s.Kick(ctx); err != nil {
		return nil, err
	}
	return &protos.TestResponse{Code: 200, Msg: "ok"}, nil
}

// TestRequestOnlySessionReturnsPtr answers "hello".
func (t *TestSvc) TestRequestOnlySessionReturnsPtr(context.Context) (*protos.TestResponse, error) {
	return &protos.TestResponse{Code: 200, Msg: "hello"}, nil
}

// TestRequestOnlySessionReturnsPtrNil answers nothing: the client gets
// PIT-000 "reply must not be null" (see refuseNilReply).
func (t *TestSvc) TestRequestOnlySessionReturnsPtrNil(context.Context) (*protos.TestResponse, error) {
	return nil, nil
}

// TestRequestReturnsPtr echoes the message in a TestResponse.
func (t *TestSvc) TestRequestReturnsPtr(_ context.Context, in *protos.TestRequest) (*protos.TestResponse, error) {
	return &protos.TestResponse{Code: 200, Msg: in.GetMsg()}, nil
}

// TestRequestOnlySessionReturnsRawNil answers nothing, raw: PIT-000 too.
func (t *TestSvc) TestRequestOnlySessionReturnsRawNil(context.Context) ([]byte, error) {
	return nil, nil
}

// TestRequestReturnsRaw answers the message's bytes as they are.
func (t *TestSvc) TestRequestReturnsRaw(_ context.Context, in *protos.TestRequest) ([]byte, error) {
	return []byte(in.GetMsg()), nil
}

// TestRequestReceiveReturnsRaw echoes the payload.
func (t *TestSvc) TestRequestReceiveReturnsRaw(_ context.Context, in []byte) ([]byte, error) {
	return in, nil
}

// TestRequestReturnsError fails with a custom code.
func (t *TestSvc) TestRequestReturnsError(context.Context, []byte) ([]byte, error) {
	return nil, codec.NewError("PIT-555", "somerror", nil)
}

// TestBind binds the session to a new uid and adds it to the group.
func (t *TestSvc) TestBind(ctx context.Context) ([]byte, error) {
	return t.bind(ctx, newUID())
}

// TestBindID binds the session to the uid in the payload and adds it to the
// group.
func (t *TestSvc) TestBindID(ctx context.Context, uid []byte) ([]byte, error) {
	return t.bind(ctx, string(uid))
}

func (t *TestSvc) bind(ctx context.Context, uid string) ([]byte, error) {
	s := session.FromContext(ctx)
	if s == nil {
		return nil, errSessionNotFound()
	}
	if err := s.Bind(ctx, uid); err != nil {
		return nil, codec.WrapError("PIT-444", err)
	}
	if err := t.app.Groups().Add(ctx, groupName, s.UID()); err != nil {
		return nil, codec.WrapError("PIT-441", err)
	}
	return []byte("ack"), nil
}

// TestSendGroupMsg (a notify) pushes the payload, raw, to the group.
func (t *TestSvc) TestSendGroupMsg(ctx context.Context, msg []byte) {
	t.broadcast(ctx, routeGroupMsg, msg)
}

// TestSendGroupMsgPtr (a notify) pushes the message, serialized, to the
// group.
func (t *TestSvc) TestSendGroupMsgPtr(ctx context.Context, msg *protos.TestRequest) {
	t.broadcast(ctx, routeGroupMsgPtr, msg)
}

// broadcast pushes v to the members of the group held by frontends of
// type pushFrontendType, as Pitaya's GroupBroadcast with a frontend type.
func (t *TestSvc) broadcast(ctx context.Context, route string, v any) {
	uids, err := t.app.Groups().Members(ctx, groupName)
	if err == nil && len(uids) > 0 {
		_, err = t.app.SendPushToUsers(ctx, route, v, uids, pushFrontendType)
	}
	if err != nil {
		t.app.Logger().Warn("group broadcast", "group", groupName, "route", route, "err", err)
	}
}

// TestSendToUsers (a notify) pushes Msg, raw, to the users UIDs.
func (t *TestSvc) TestSendToUsers(ctx context.Context, in *SendToUsersRequest) {
	if _, err := t.app.SendPushToUsers(ctx, routeSendToUsers, []byte(in.Msg), in.UIDs, pushFrontendType); err != nil {
		t.app.Logger().Warn("push to users", "route", routeSendToUsers, "err", err)
	}
}

// TestSendRPC calls the remote in.Route with a TestRequest holding in.Data
// and answers its TestResponse, or its error.
func (t *TestSvc) TestSendRPC(ctx context.Context, in *RPCRequest) (*protos.TestResponse, error) {
	out := &protos.TestResponse{}
	if err := t.rpc(ctx, in.Route, &protos.TestRequest{Msg: in.Data}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// TestSendRPCNoArgs calls the remote in.Route without an argument.
func (t *TestSvc) TestSendRPCNoArgs(ctx context.Context, in *RPCRequest) (*protos.TestResponse, error) {
	out := &protos.TestResponse{}
	if err := t.rpc(ctx, in.Route, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// newUID returns a random version-4 UUID, as Pitaya's server binds.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
