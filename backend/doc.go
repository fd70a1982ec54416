// Package backend holds a server's handlers: components whose exported
// methods become routes, the before/after pipelines around them, and the
// dispatch of a decoded client message to the right method.
//
// A component is any struct value. Each exported method of one of these
// shapes becomes the route "component.method" (lower-camel method name, as
// Pitaya names them):
//
//	func (c *C) M(ctx context.Context, in *T) (*R, error)   // request
//	func (c *C) M(ctx context.Context) (*R, error)          // request, no argument
//	func (c *C) M(ctx context.Context, in []byte) ([]byte, error) // raw bytes
//	func (c *C) M(ctx context.Context, in *T)               // notify
//	func (c *C) M(ctx context.Context)                      // notify, no argument
//
// R may be any type the serializer handles; T is a pointer or []byte. A
// client may name a route with two parts ("room.join": this server) or three
// ("chat.room.join", where "chat" is this server's type). Routes follow
// [codec.ParseRoute]'s rule: Register refuses a component or method name
// that would make a route no client could send (empty, or holding '.', a
// space, '*', '>', '/', '\', a control character), and a route the rule
// rejects has no handler (PIT-404).
//
// Callers that have parsed a route already (a frontend or the cluster
// parses a client's route once with codec.ParseRoute) pass the
// [codec.Route] on to [Registry.HandleRoute], [Registry.HasRoute] and
// [Registry.LocalRoute]; Handle, Has and Local take the string and parse it.
//
// Errors: an unknown route answers PIT-404; a handler that returns an
// [codec.Error] sends that code, message and metadata; any other error, and a
// panic (logged with its route and stack), answers PIT-500 to that client
// only. Notifies never get error replies.
//
// In a cluster the same registry serves requests forwarded over the bus.
package backend
