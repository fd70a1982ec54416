package stream

import "strings"

// Every subject the project uses is built here, under the bus's prefix
// <p> (Config.Prefix, default "nopal"); the table in the package comment
// lists them with what travels on each. Arguments that become one token
// (server ids, server types, jids, keys) must not hold '.', '*', '>' or
// spaces: server ids and types are checked where they are configured, jids
// are ULIDs and mailbox keys come from bindings.Key.

// First tokens after the prefix.
const (
	tokRPC     = "rpc"     // <p>.rpc.<route>
	tokServer  = "srv"     // <p>.srv.<id>.<kind>
	tokReply   = "reply"   // <p>.reply.<id>.…
	tokJob     = "job"     // <p>.job.<svtype>.<jid>, <p>.job.<svtype>.srv.<id>.<jid>
	tokJobDLQ  = "jobdlq"  // <p>.jobdlq.<svtype>.<jid>
	tokMailbox = "mbox"    // <p>.mbox.<key>
	tokTraffic = "traffic" // <p>.traffic.<id>
)

// Kinds of a server's subjects, <p>.srv.<id>.<kind>.
const (
	kindRPC     = "rpc"
	kindPush    = "push"
	kindKick    = "kick"
	kindSession = "sess"
	kindResume  = "resume"
	kindForward = "fwd"
)

// jobTarget is the token of targeted jobs: <p>.job.<svtype>.srv.<id>.<jid>.
const jobTarget = "srv"

func (b *Bus) subject(tokens ...string) string {
	return b.prefix + "." + strings.Join(tokens, ".")
}

func (b *Bus) server(serverID, kind string) string {
	return b.subject(tokServer, serverID, kind)
}

// RPCSubject is the subject of calls, a Call, to any server of a route's
// type (route = svtype.component.method): <p>.rpc.<route>. The servers of
// a type answer it in one queue group.
func (b *Bus) RPCSubject(route string) string { return b.subject(tokRPC, route) }

// RPCTypeWildcard matches every call to servers of type svType,
// <p>.rpc.<svtype>.>: what a server subscribes to, in the queue group
// svType.
func (b *Bus) RPCTypeWildcard(svType string) string { return b.subject(tokRPC, svType, ">") }

// ServerRPC is the subject of calls, a Call, to one server (a router picked
// it, or RPCTo named it): <p>.srv.<id>.rpc.
func (b *Bus) ServerRPC(serverID string) string { return b.server(serverID, kindRPC) }

// ServerPush is the subject of pushes, a Push, to the users of one
// frontend, answered with a Delivery: <p>.srv.<id>.push.
func (b *Bus) ServerPush(serverID string) string { return b.server(serverID, kindPush) }

// ServerKick is the subject of kicks, a Kick, of users of one frontend,
// answered with a Delivery: <p>.srv.<id>.kick.
func (b *Bus) ServerKick(serverID string) string { return b.server(serverID, kindKick) }

// ServerSessionOp is the subject of session operations from backends (bind,
// data sync), a SessionOp, to the frontend that holds the session, answered
// with a Reply: <p>.srv.<id>.sess.
func (b *Bus) ServerSessionOp(serverID string) string { return b.server(serverID, kindSession) }

// ServerResume is the subject on which a frontend is asked to hand a
// session over to the frontend its client resumed on (ops "take" and
// "drain"): <p>.srv.<id>.resume.
func (b *Bus) ServerResume(serverID string) string { return b.server(serverID, kindResume) }

// ServerForward is the subject of pushes and late responses, a Forward,
// that the old frontend of a session being resumed forwards to its new
// one: <p>.srv.<id>.fwd.
func (b *Bus) ServerForward(serverID string) string { return b.server(serverID, kindForward) }

// ReplyPrefix is this process's inbox prefix, <p>.reply.<id>: replies to
// its requests (Request, Call) come on <p>.reply.<id>.q.<n>, served by one
// wildcard subscription (request.go); nats.go's own inboxes (JetStream's)
// are under it too.
func (b *Bus) ReplyPrefix() string { return b.subject(tokReply, b.id) }

// JobSubject is the subject of a reliable job for any server of svtype (a
// job message in the stream JOBS): <p>.job.<svtype>.<jid>.
func (b *Bus) JobSubject(svtype, jid string) string { return b.subject(tokJob, svtype, jid) }

// JobTargetSubject is the subject of a reliable job for the server serverID
// of svtype: <p>.job.<svtype>.srv.<id>.<jid>.
func (b *Bus) JobTargetSubject(svtype, serverID, jid string) string {
	return b.subject(tokJob, svtype, jobTarget, serverID, jid)
}

// JobFilter matches the jobs for any server of svtype (the shared
// consumer's filter), not the targeted ones: <p>.job.<svtype>.*.
func (b *Bus) JobFilter(svtype string) string { return b.subject(tokJob, svtype, "*") }

// JobTargetFilter matches the jobs targeted at the server serverID of
// svtype (its own consumer's filter): <p>.job.<svtype>.srv.<id>.*.
func (b *Bus) JobTargetFilter(svtype, serverID string) string {
	return b.subject(tokJob, svtype, jobTarget, serverID, "*")
}

// JobsWildcard matches every job message, the stream JOBS's subjects:
// <p>.job.>.
func (b *Bus) JobsWildcard() string { return b.subject(tokJob, ">") }

// DLQSubject is the subject of a job's dead letter in the stream JOBS_DLQ
// (one per jid): <p>.jobdlq.<svtype>.<jid>.
func (b *Bus) DLQSubject(svtype, jid string) string { return b.subject(tokJobDLQ, svtype, jid) }

// DLQWildcard matches every dead letter, the stream JOBS_DLQ's subjects:
// <p>.jobdlq.>.
func (b *Bus) DLQWildcard() string { return b.subject(tokJobDLQ, ">") }

// MailboxSubject is the subject of the pushes kept in the stream MAILBOX
// for a user who may resume: <p>.mbox.<key>, key being the user's
// bindings.Key (a uid made into one subject token).
func (b *Bus) MailboxSubject(key string) string { return b.subject(tokMailbox, key) }

// MailboxWildcard matches every mailbox, the stream MAILBOX's subjects:
// <p>.mbox.>.
func (b *Bus) MailboxWildcard() string { return b.subject(tokMailbox, ">") }

// TrafficSubject is the subject of the traffic log batches (TrafficBatch)
// that the server serverID records: <p>.traffic.<id>.
func (b *Bus) TrafficSubject(serverID string) string { return b.subject(tokTraffic, serverID) }

// TrafficWildcard matches every traffic log batch, the stream TRAFFIC's
// subjects: <p>.traffic.>.
func (b *Bus) TrafficWildcard() string { return b.subject(tokTraffic, ">") }
