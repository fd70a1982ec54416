// Package console is the cluster's web console: one HTML page, plain
// JavaScript and CSS embedded in the binary (no build step, no CDN), and a
// JSON API under /api/, served by `node console` and `node serve
// -console-addr`.
//
// It reads the cluster where it lives, on the bus, and never registers
// itself as a server:
//
//   - Cluster: a watcher of the KV bucket "servers" (what discovery puts):
//     servers by type, frontend or not, metadata, version, the time of
//     each one's last heartbeat (the entry's time), joins, leaves (a
//     deleted key) and deaths (the purge marker of an expired key), and
//     each frontend's bound sessions (from the bindings).
//   - Users: a watcher of the KV bucket "bindings": the online count, who
//     is bound where; a uid's session data from the KV bucket "sessions";
//     a kick goes to the frontend's kick subject, as cluster pushes do.
//   - Groups: the KV bucket "groups" (meta keys and member keys), listed by
//     one stream-info request, refreshed when its watcher sees a put or a
//     purge request goes to its stream (groups are removed by purges,
//     which watchers do not see).
//   - Jobs: a watcher of the KV bucket "jobs" keeps the counts by state;
//     lists, a job's record, Retry and Cancel go through reliable.Client;
//     the dead letters are read from JOBS_DLQ, and a subscription to their
//     subjects tells the page when a new one is published.
//   - Traffic: one live tail of the TRAFFIC stream (stream.Replay with
//     Follow), shared by every page; a query replays a window with
//     stream.Filter, as `node replay` does.
//
// The page gets the live changes over Server-Sent Events (/api/events): a
// snapshot, then the changes: joins, leaves and deaths at once, the rest
// (heartbeats, binds, groups, jobs, dead letters, traffic) coalesced every 200 ms, with
// at most 200 traffic lines per flush (the rest are counted as skipped). A
// page that falls behind is cut off and reconnects to a new snapshot.
// Nothing polls.
//
// # API
//
//	GET  /api/overview                 the snapshot: servers, users, groups, job counts, recent traffic
//	GET  /api/events                   Server-Sent Events: snapshot, servers, cluster, beats, users, groups, jobs, dlq, traffic
//	GET  /api/servers                  servers (with last heartbeat, bound sessions) and the latest joins, leaves, deaths
//	GET  /api/users                    online count, per frontend, the latest binds
//	GET  /api/user?uid=                a uid's frontend, session and session data
//	POST /api/user/kick  {"uid":…}     kick it (token)
//	GET  /api/groups                   groups with member counts and TTLs
//	GET  /api/group?name=              a group's members
//	GET  /api/jobs?state=&route=&since=&until=&limit=&cursor=   jobs, newest first
//	GET  /api/jobs/counts              jobs by state
//	GET  /api/job?jid=                 a job: attempts (server, error), result
//	POST /api/job/retry  {"jid":…}     retry a dead or failed job (token)
//	POST /api/job/cancel {"jid":…}     cancel a queued or retrying job (token)
//	GET  /api/dlq?limit=               dead letters (JOBS_DLQ), newest first
//	GET  /api/traffic?route=&uid=&server=&since=&until=&limit=  a replay, as node replay
//	GET  /api/traffic/hops?kind=&at=&route=&frontend=&uid=      a request's records, call to reply
//
// # Access
//
// On a loopback address the API answers reads from the machine itself
// (with a Host header naming a loopback address, against DNS rebinding).
// Any other address needs Config.Token: Serve refuses to listen without
// one, and every API request must carry it (header "Authorization: Bearer
// <token>", or ?token= on GET requests, which EventSource needs). Actions
// (kick, retry, cancel) always need the token: when Config.Token is empty a
// random one is made (Console.Token), and `node console` prints the page's
// URL with it (http://127.0.0.1:3280/#token=…); actions take it from the
// header only (a cross-site form cannot set one) and must be JSON POSTs.
// Bad input gets a 4xx answer with a JSON body {"error": "…"}.
package console
