package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestResumeSmall runs the resume benchmark briefly against real server
// subprocesses (the test binary re-executed): the loads complete and every
// resume gets its missed pushes once, in order.
func TestResumeSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res, err := runResume(exe, resumeOptions{Duration: 300 * time.Millisecond, Conns: 4, Missed: 20, Resumes: 10}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumes != 10 || res.ResumeP50Us <= 0 || res.On.Requests == 0 || res.Off.Requests == 0 || res.Floor1.P50Us <= 0 {
		t.Fatalf("results: %+v", res)
	}
	var out strings.Builder
	printResume(&out, res)
	if !strings.Contains(out.String(), "resume with 20 missed pushes") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestStormSmall: a small reconnect storm leaves every session whole.
func TestStormSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r, err := runStorm(40, 40, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost+r.Duplicated+r.OutOfOrder+r.Orphaned > 0 || r.Sessions != 40 {
		t.Fatalf("storm: %+v", r)
	}
}
