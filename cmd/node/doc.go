// Command node runs Nopal.
//
//	node serve    run servers: by default the cluster chat (a connector frontend
//	              and a room backend) on an embedded NATS server, TCP on
//	              127.0.0.1:3250 and WebSocket plus the chat page on 127.0.0.1:3251
//	node client   an interactive client (REPL) for any Pitaya-protocol server
//	node servers  list a cluster's servers
//	node replay   print the traffic a cluster recorded
//	node jobs     reliable RPC jobs: enqueue, get, wait, list, retry, cancel
//	node nats     a NATS server with JetStream alone, for a cluster whose
//	              servers each run in a process of their own
//	node routes   the routes of a cluster's servers, with their input and
//	              output types (Pitaya's docs)
//	node console  the web console of a cluster, live: servers, users,
//	              groups, jobs, traffic (http://127.0.0.1:3280)
//	node presence the users online in a cluster (-follow: who comes and goes)
//
// Run `node <command> -h` for the flags. The commands that inspect a running
// cluster (servers, replay, jobs, routes, presence) take its NATS URL from -nats or $NATS_URL.
//
// `node serve` stops on SIGINT or SIGTERM: its frontends drain first, then
// its backends, then its embedded NATS server, within -shutdown-timeout; a
// second signal stops it at once.
package main
