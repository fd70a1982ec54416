package chat

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/timers"
)

// ServerType is the chat server's type.
const ServerType = "chat"

// GroupName is the one room's group.
const GroupName = "room"

//go:embed web/index.html
var page []byte

// Page serves the chat web page for the standalone chat server.
func Page() http.Handler { return PageFor("room") }

// PageFor serves the chat web page calling routes under roomPrefix: "room"
// on the standalone server, "room.room" on a cluster's frontend.
func PageFor(roomPrefix string) http.Handler {
	body := bytes.Replace(page, []byte(`<meta name="nopal-room" content="room">`),
		[]byte(`<meta name="nopal-room" content="`+html.EscapeString(roomPrefix)+`">`), 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(body)
	})
}

// JoinResponse answers room.join.
type JoinResponse struct {
	Code   int    `json:"code"`
	Result string `json:"result"`
}

// UserMessage is a chat line.
type UserMessage struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// NewUser announces a user to the room.
type NewUser struct {
	Content string `json:"content"`
}

// AllMembers lists the room's members.
type AllMembers struct {
	Members []string `json:"members"`
}

// Room is the chat component.
type Room struct {
	groups groups.Service
}

// MemberCountInterval is how often the room logs its member count, as
// Pitaya's chat demo does.
const MemberCountInterval = time.Minute

// Setup registers the room on app, creates its group and starts the
// member-count timer (stopped when the app shuts down).
func Setup(ctx context.Context, app *nopal.App) error {
	if err := app.Groups().Create(ctx, GroupName); err != nil && !errors.Is(err, groups.ErrGroupAlreadyExists) {
		return err
	}
	r := &Room{groups: app.Groups()}
	if err := app.Register(r, backend.WithName("room")); err != nil {
		return err
	}
	StartMemberCount(app, MemberCountInterval, func() groups.Service { return r.groups })
	return nil
}

// StartMemberCount logs the room's member count every interval (Pitaya's
// chat demo: "UserCount"), until the app shuts down. g gives the group
// service at each tick.
func StartMemberCount(app *nopal.App, interval time.Duration, g func() groups.Service) *timers.Timer {
	return app.NewTimer(interval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := g().Count(ctx, GroupName)
		app.Logger().Debug("UserCount", "time", time.Now(), "count", n, "err", err)
	})
}

// Join binds the session, tells the joiner who is there and the room who
// came, then adds the joiner to the room.
func (r *Room) Join(ctx context.Context, _ []byte) (*JoinResponse, error) {
	s := session.FromContext(ctx)
	uid := strconv.FormatInt(s.ID(), 10)
	if err := s.Bind(ctx, uid); err != nil {
		return nil, fmt.Errorf("chat: bind: %w", err)
	}
	members, err := r.groups.Members(ctx, GroupName)
	if err != nil {
		return nil, err
	}
	if err := s.Push("onMembers", &AllMembers{Members: members}); err != nil {
		return nil, err
	}
	if _, err := r.groups.Broadcast(ctx, GroupName, "onNewUser", &NewUser{Content: "New user: " + uid}); err != nil {
		return nil, err
	}
	if err := r.groups.Add(ctx, GroupName, uid); err != nil {
		return nil, err
	}
	s.OnClose(func() { _ = r.groups.Remove(context.WithoutCancel(ctx), GroupName, uid) })
	return &JoinResponse{Code: 0, Result: "success"}, nil
}

// Message broadcasts a chat line to the room.
func (r *Room) Message(ctx context.Context, msg *UserMessage) {
	_, _ = r.groups.Broadcast(ctx, GroupName, "onMessage", msg)
}
