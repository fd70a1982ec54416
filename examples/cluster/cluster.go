package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
)

// Server types.
const (
	ConnectorType = "connector"
	RoomType      = "room"
)

// RoomPrefix is what clients put before join and message.
const RoomPrefix = "room.room"

// Room is the room backend's handler component.
type Room struct{ app *nopal.App }

// Remote is the room backend's RPC component.
type Remote struct{ app *nopal.App }

// LeaveArg says who left.
type LeaveArg struct {
	UID string `json:"uid"`
}

// Left answers a leave.
type Left struct {
	Left bool `json:"left"`
}

// SetupRoom registers the room's handlers and remotes on a room server.
// Users of a frontend that dies leave the room too: once the resume grace
// has passed, another frontend ends their sessions, and the connector's
// OnSessionClose hook (SetupConnector) tells the room.
//
// Each room server logs the room's member count every
// chat.MemberCountInterval, as Pitaya's chat demo does.
func SetupRoom(app *nopal.App) error {
	if err := app.Register(&Room{app: app}, backend.WithName("room")); err != nil {
		return err
	}
	if err := app.RegisterRemote(&Remote{app: app}, backend.WithName("room")); err != nil {
		return err
	}
	chat.StartMemberCount(app, chat.MemberCountInterval, app.Groups)
	return nil
}

// SetupConnector makes a connector tell a room server when a bound client
// leaves.
func SetupConnector(app *nopal.App) {
	app.OnSessionClose(func(s *session.Session) {
		uid := s.UID()
		if uid == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := app.RPC(ctx, RoomType+".room.leave", &LeaveArg{UID: uid}, &Left{}); err != nil {
			app.Logger().Warn("telling the room a user left", "uid", uid, "err", err)
		}
	})
}

func room(ctx context.Context, app *nopal.App) (groups.Service, error) {
	g := app.Groups()
	if err := g.Create(ctx, chat.GroupName); err != nil && !errors.Is(err, groups.ErrGroupAlreadyExists) {
		return nil, err
	}
	return g, nil
}

// Join binds the session to a cluster-wide uid, tells the joiner who is
// there and the room who came, then adds the joiner.
func (r *Room) Join(ctx context.Context, _ []byte) (*chat.JoinResponse, error) {
	s := session.FromContext(ctx)
	uid := fmt.Sprintf("%s-%d", s.FrontendID(), s.ID())
	if err := s.Bind(ctx, uid); err != nil {
		return nil, fmt.Errorf("room: bind: %w", err)
	}
	g, err := room(ctx, r.app)
	if err != nil {
		return nil, err
	}
	members, err := g.Members(ctx, chat.GroupName)
	if err != nil {
		return nil, err
	}
	if err := s.Push("onMembers", &chat.AllMembers{Members: members}); err != nil {
		return nil, err
	}
	if _, err := g.Broadcast(ctx, chat.GroupName, "onNewUser", &chat.NewUser{Content: "New user: " + uid}); err != nil {
		return nil, err
	}
	if err := g.Add(ctx, chat.GroupName, uid); err != nil {
		return nil, err
	}
	return &chat.JoinResponse{Code: 0, Result: "success"}, nil
}

// Message broadcasts a chat line to the room.
func (r *Room) Message(ctx context.Context, msg *chat.UserMessage) {
	_, _ = r.app.Groups().Broadcast(ctx, chat.GroupName, "onMessage", msg)
}

// Leave removes a user from the room (an RPC from the connector).
func (r *Remote) Leave(ctx context.Context, arg *LeaveArg) (*Left, error) {
	err := r.app.Groups().Remove(ctx, chat.GroupName, arg.UID)
	if errors.Is(err, groups.ErrMemberNotFound) || errors.Is(err, groups.ErrGroupNotFound) {
		return &Left{Left: false}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Left{Left: true}, nil
}
