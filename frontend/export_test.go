package frontend

// LinkCount is the number of links the frontend holds: one per session of
// its pool (live or suspended). Tests check it drops to zero, so that no
// ended session is left in the frontend's table.
func LinkCount(f *Frontend) int {
	f.lmu.RLock()
	defer f.lmu.RUnlock()
	return len(f.links)
}
