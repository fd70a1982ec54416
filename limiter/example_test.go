package limiter_test

import (
	"fmt"
	"time"

	"github.com/nopal-dev/nopal/limiter"
)

// A limiter of 1 request per second: dropped requests count, so a request
// 1.1 s after the first is still dropped (it is only 0.9 s after the dropped
// one), and the one at 2.2 s is accepted.
func Example() {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := limiter.New(1, time.Second)
	if err != nil {
		panic(err)
	}
	for _, ms := range []int{0, 200, 1100, 2200} {
		at := start.Add(time.Duration(ms) * time.Millisecond)
		fmt.Printf("%4d ms: %v\n", ms, l.AllowAt(at))
	}
	// Output:
	//    0 ms: true
	//  200 ms: false
	// 1100 ms: false
	// 2200 ms: true
}

// The reader goroutine of a connection asks the limiter before handling each
// request and counts what it drops itself. WithClock makes the example
// deterministic; a server uses the default clock.
func ExampleLimiter_Allow() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := limiter.New(3, time.Second, limiter.WithClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	handled, dropped := 0, 0
	for range 10 { // a burst of 10 requests 10 ms apart
		if l.Allow() {
			handled++
		} else {
			dropped++
		}
		now = now.Add(10 * time.Millisecond)
	}
	fmt.Println("handled", handled, "dropped", dropped)
	// Output: handled 3 dropped 7
}

func ExampleNew_invalid() {
	_, err := limiter.New(0, time.Second)
	fmt.Println(err)
	// Output: limiter: limit must be at least 1, got 0: invalid configuration
}
