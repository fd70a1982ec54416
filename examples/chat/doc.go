// Package chat is Pitaya's chat demo on Nopal: a room everyone joins, where
// every message is broadcast to all. Its web page (served by `make run`)
// and Pitaya's own chat clients work unchanged.
//
// Routes (two parts, or three with the server type "chat"):
//
//   - request room.join: binds the session to a uid (the session id), pushes
//     onMembers {"members":[…]} to the joiner, broadcasts onNewUser
//     {"content":"New user: <uid>"} to the room, adds the uid to group "room"
//     (removed when the session closes) and answers
//     {"code":0,"result":"success"};
//   - notify room.message {"name":…,"content":…}: broadcast to the room as
//     push onMessage.
//
// As in Pitaya's demo, the room logs its member count every minute
// (MemberCountInterval, message "UserCount" at debug level) with an app
// timer, stopped when the app shuts down.
package chat
