// Command node runs Nopal.
//
//	node serve    run servers: by default the cluster chat (a connector frontend
//	              and a room backend) on an embedded NATS server, TCP on
//	              127.0.0.1:3250 and WebSocket plus the chat page on 127.0.0.1:3251
//	node client   an interactive client (REPL) for any Pitaya-protocol server
//	node servers  list a cluster's servers
//	node replay   print the traffic a cluster recorded
//
// Run `node <command> -h` for the flags.
package main
