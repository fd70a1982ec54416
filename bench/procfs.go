package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clkTck = 100

// cpuTimes returns utime and stime of process pid (all its threads), in
// clock ticks.
func cpuTimes(pid int) (utime, stime int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold spaces: fields are
	// counted from the last ')'. After it come field 3 (state) onwards;
	// utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return utime, stime, nil
}

// cpuTimesAll sums cpuTimes over several processes.
func cpuTimesAll(pids []int) (utime, stime int64, err error) {
	for _, pid := range pids {
		u, s, err := cpuTimes(pid)
		if err != nil {
			return 0, 0, err
		}
		utime += u
		stime += s
	}
	return utime, stime, nil
}

// ctxSwitchesAll sums ctxSwitches over several processes.
func ctxSwitchesAll(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		n, err := ctxSwitches(pid)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// ctxSwitches returns the context switches (voluntary and not) of every
// thread of process pid so far. Threads that exited are not counted; Go
// rarely ends threads.
func ctxSwitches(pid int) (int64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread just exited
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// syscallsAll sums, over several processes, the read and write system
// calls they made so far (syscr and syscw of /proc/PID/io: every read,
// recvmsg, write, sendmsg… of any descriptor). Per request, it says how
// many hops and flushes a path costs.
func syscallsAll(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "syscr" || k == "syscw") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// machineBusy returns the CPU time the machine has spent so far, all CPUs
// together, in clock ticks, from the first line of /proc/stat: busy is
// user, nice, system, irq and softirq (not idle, I/O wait or steal);
// softirq, part of it, is mostly the network stack, which the kernel
// charges to no process (loopback packets are delivered in softirq).
func machineBusy() (busy, softirq int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	for i, v := range f[1:8] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", v, err)
		}
		switch i {
		case 0, 1, 2, 5: // user, nice, system, irq
			busy += n
		case 6:
			busy += n
			softirq = n
		}
	}
	return busy, softirq, nil
}

// rssKB returns VmRSS of process pid in KiB.
func rssKB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelRelease returns the running kernel's release.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// raiseNofile sets the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit. The Go runtime raises its own soft limit at start-up
// but restores the original one in the processes it starts, unless the
// program calls Setrlimit itself: after this call the server subprocesses
// inherit the raised limit.
func raiseNofile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}
