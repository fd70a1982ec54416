// Command node runs Nopal.
//
//	node serve    run a server: the chat example, TCP on 127.0.0.1:3250 and
//	              WebSocket plus the chat page on 127.0.0.1:3251
//	node client   an interactive client (REPL) for any Pitaya-protocol server
//
// Run `node <command> -h` for the flags.
package main
