package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nopal-dev/nopal/metrics"
)

func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	set, err := metrics.NewSet(metrics.Config{
		Namespace:  "pitaya", // Pitaya's names: existing dashboards keep working
		Game:       "mygame",
		ServerType: "room",
		Custom: metrics.CustomConfig{
			Counters: []metrics.CustomMetric{{Subsystem: "room", Name: "joins_total", Labels: []string{"mode"}}},
		},
	})
	if err != nil {
		panic(err)
	}
	addr, err := set.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}

	set.ObserveResponse("room.room.join", metrics.TypeHandler, 3*time.Millisecond, "")
	set.SetServerCount("connector", 2)
	if err := set.Count("room_joins_total", map[string]string{"mode": "duel"}, 1); err != nil {
		panic(err)
	}

	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pitaya_handler_response_time_ns_count") ||
			strings.HasPrefix(line, "pitaya_handler_response_time_ns_hist_bucket{code=\"\",game=\"mygame\",route=\"room.room.join\",serverType=\"room\",status=\"ok\",type=\"handler\",le=\"5e+06\"}") ||
			strings.HasPrefix(line, "pitaya_service_discovery_count_servers") ||
			strings.HasPrefix(line, "pitaya_room_joins_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// pitaya_handler_response_time_ns_count{code="",game="mygame",route="room.room.join",serverType="room",status="ok",type="handler"} 1
	// pitaya_handler_response_time_ns_hist_bucket{code="",game="mygame",route="room.room.join",serverType="room",status="ok",type="handler",le="5e+06"} 1
	// pitaya_room_joins_total{game="mygame",mode="duel",serverType="room"} 1
	// pitaya_service_discovery_count_servers{game="mygame",serverType="room",type="connector"} 2
}

// A Reporter of one's own receives every metric the Set reports.
type logReporter struct{}

func (logReporter) ReportCount(name string, tags map[string]string, v float64) error {
	fmt.Println("count", name, v)
	return nil
}

func (logReporter) ReportGauge(name string, tags map[string]string, v float64) error {
	fmt.Println("gauge", name, tags, v)
	return nil
}

func (logReporter) ReportSummary(name string, tags map[string]string, v float64) error {
	fmt.Println("summary", name, tags["route"], tags["status"], v)
	return nil
}

func (logReporter) ReportHistogram(name string, tags map[string]string, v float64) error {
	fmt.Println("histogram", name, v)
	return nil
}

func ExampleReporter() {
	set, err := metrics.NewSet(metrics.Config{}, logReporter{})
	if err != nil {
		panic(err)
	}
	set.ObserveResponse("room.room.join", metrics.TypeHandler, time.Millisecond, "PIT-500")
	set.SetServerCount("room", 3)
	set.IncRateLimited()
	// Output:
	// summary handler_response_time_ns room.room.join failed 1e+06
	// gauge service_discovery_count_servers map[type:room] 3
	// count acceptor_exceeded_rate_limiting 1
}

func ExampleNewStatsd() {
	cfg := metrics.Config{Game: "mygame", ServerType: "room"}
	sd, err := metrics.NewStatsd("127.0.0.1:8125", "nopal.",
		map[string]string{"game": cfg.Game, "serverType": cfg.ServerType}, 1)
	if err != nil {
		panic(err)
	}
	defer sd.Close() // flushes
	set, err := metrics.NewSet(cfg, sd)
	if err != nil {
		panic(err)
	}
	// Sent as "nopal.acceptor_connected_clients:12|g|#game:mygame,serverType:room".
	set.SetConnectedClients(12)
}
