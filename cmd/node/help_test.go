package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Every command answers -h and --help with its usage and exit code 0, and
// every flag's usage line names its value by its type: a word in
// backquotes in a usage string would become the value's name instead.
func TestHelpExitsZero(t *testing.T) {
	bin := nodeBinary(t)
	flagLine := regexp.MustCompile(`^  -(\S+)(?: (.*))?$`)
	valueNames := map[string]bool{"": true, "string": true, "int": true, "duration": true, "value": true, "uint": true, "float": true}
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"--help"},
		{"serve", "-h"}, {"serve", "--help"},
		{"client", "-h"}, {"client", "--help"},
		{"servers", "-h"}, {"replay", "-h"}, {"nats", "-h"}, {"routes", "-h"}, {"presence", "-h"}, {"console", "-h"},
		{"jobs", "-h"}, {"jobs", "--help"}, {"jobs", "enqueue", "-h"}, {"jobs", "list", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, args...)
			cmd.Env = append(cmd.Environ(), "NATS_URL=")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit code %d (%v):\n%s", code, err, out.String())
			}
			text := out.String()
			if strings.Contains(text, "required") && !strings.Contains(text, "-nats") {
				t.Errorf("help asks for something:\n%s", text)
			}
			if strings.Contains(text, "is required:") {
				t.Errorf("help printed an error:\n%s", text)
			}
			if !strings.Contains(text, "usage") && !strings.Contains(text, "Usage") {
				t.Errorf("no usage in:\n%s", text)
			}
			for line := range strings.Lines(text) {
				if m := flagLine.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil && !valueNames[m[2]] {
					t.Errorf("flag -%s names its value %q (a backquoted word in its usage?)", m[1], m[2])
				}
			}
		})
	}
}
