package frontend

import "github.com/nopal-dev/nopal/session"

// LinkCount is the number of links the frontend holds: one per session of
// its pool (live or suspended). Tests check it drops to zero, so that no
// ended session is left in the frontend's table.
func LinkCount(f *Frontend) int {
	f.lmu.RLock()
	defer f.lmu.RUnlock()
	return len(f.links)
}

// QueuedBytes is the bytes the frontend's send queues hold now (counted
// against Config.SendBudget). Tests check it goes back to zero.
func QueuedBytes(f *Frontend) int64 { return f.queued.Load() }

// QueuedBytesOf is the bytes the send queue of s's connection holds now
// (0 when s has no connection here).
func QueuedBytesOf(f *Frontend, s *session.Session) int {
	if s == nil {
		return 0
	}
	l := f.linkOf(s)
	if l == nil {
		return 0
	}
	l.mu.Lock()
	a := l.ag
	l.mu.Unlock()
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queued
}
