// Package cluster is the chat example split over a cluster: a "connector"
// frontend holds the clients (TCP, WebSocket and the chat page) and a
// "room" backend runs the room. They meet on the bus; run them in one
// process (`node serve`) or as separate processes:
//
//	node serve -type room -nats-listen 127.0.0.1:4222 -tcp "" -ws ""
//	node serve -type connector -nats nats://127.0.0.1:4222
//
// Routes: request room.room.join and notify room.room.message, answered by
// a room server through the connector. The room group lives in the
// cluster's groups bucket, so any room server can serve any request; when a
// client leaves, the connector tells a room server with the RPC
// room.room.leave.
package cluster
