//go:build race

package main

// Under -race the servers are built with -race too: a race in one makes it
// print "DATA RACE", which fails the test.
func init() { buildFlags = append(buildFlags, "-race") }
