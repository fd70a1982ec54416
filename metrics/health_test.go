package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /healthz is always ok; /readyz runs every check of the Exporter, the
// Sets' (named after their serverType) and AddReadiness's, and lists the
// failures.
func TestHealthAndReadyEndpoints(t *testing.T) {
	exp := NewExporter()
	front, err := NewSet(Config{ServerType: "connector", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	room, err := NewSet(Config{ServerType: "room", Exporter: exp, DisableRuntimeCollectors: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := front.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	check := func(path string, wantCode int, wantBody string) {
		t.Helper()
		if code, body := get(t, base+path); code != wantCode || body != wantBody {
			t.Errorf("%s: %d %q, want %d %q", path, code, body, wantCode, wantBody)
		}
	}
	check("/healthz", 200, "ok\n")
	check("/readyz", 200, "ok\n") // no check yet

	front.SetReadiness(func(context.Context) error { return nil })
	room.SetReadiness(func(context.Context) error { return errors.New("bus not connected") })
	remove := exp.AddReadiness("db", func(context.Context) error { return errors.New("down") })
	check("/readyz", 503, "not ready\ndb: down\nroom: bus not connected\n")
	remove()
	check("/readyz", 503, "not ready\nroom: bus not connected\n")
	room.SetReadiness(func(context.Context) error { return nil })
	check("/readyz", 200, "ok\n")
	room.SetReadiness(func(context.Context) error { return errors.New("draining") })
	room.Close() // the check stays: a stopped server is not ready
	check("/readyz", 503, "not ready\nroom: draining\n")
	room.SetReadiness(nil)
	check("/readyz", 200, "ok\n")
	check("/healthz", 200, "ok\n")
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}
