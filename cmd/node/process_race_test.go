//go:build race

package main

// Under -race the node processes are built with -race too: a race in a
// child makes it print "DATA RACE" (which fails the test) and exit 66.
func init() { nodeBuildFlags = append(nodeBuildFlags, "-race") }
