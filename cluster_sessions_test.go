package nopal_test

import (
	"strconv"
	"testing"

	"github.com/nopal-dev/nopal/cluster"
)

// A frontend publishes its connected and suspended sessions in discovery
// with its heartbeats: every node (and the console) sees them.
func TestFrontendPublishesSessionCounts(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	room := c.room("room-1", false, nil)
	a := c.connector("conn-a", nil)
	awaitServers(t, "connector", []string{"conn-a"}, room.app)
	counts := func() (string, string) {
		s, ok := room.app.Discovery().ServerByID("conn-a")
		if !ok {
			return "", ""
		}
		return s.Metadata[cluster.MetaConnected], s.Metadata[cluster.MetaSuspended]
	}
	for want := 1; want <= 2; want++ {
		cl := dialOpts(t, a.tcp)
		defer cl.Close()
		eventually(t, "conn-a to publish "+strconv.Itoa(want)+" connected", func() bool {
			conn, susp := counts()
			return conn == strconv.Itoa(want) && susp == "0"
		})
	}
}
