package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/console"
	cluster "github.com/nopal-dev/nopal/examples/cluster"
)

// chromium finds a Chromium or Chrome binary ($CHROMIUM first).
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// The console in a real headless browser: the page lists the servers of a
// running cluster, shows a user joining, a job moving to succeeded after
// "Retry", and a traffic line for a chat message. It takes a screenshot of
// each view, into $NOPAL_CONSOLE_SCREENSHOTS when set (docs/ holds the
// README's), else into a temporary folder.
//
// It skips when no Chromium is found, except in CI (CI set), where it must
// run: .ci/run installs Debian's chromium.
func TestBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium binary, and CI is set: the browser test must run in CI (apt-get install -y chromium)")
		}
		t.Skip("no chromium binary (apt-get install -y chromium, or set $CHROMIUM)")
	}
	shots := os.Getenv("NOPAL_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	tc := startCluster(t, console.Config{})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 860),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	// The first run starts the browser, which lives as long as its
	// context: no timeout on that one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}

	fail := func(what string, err error) {
		t.Helper()
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		defer hcancel()
		html, _ := chromedp.Run(hctx, chromedp.OuterHTML("main"))
		t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		err := chromedp.Do(sctx, actions...)
		// The page re-renders a list when its data changes (a heartbeat's
		// session counts, a job's state): a node found by a wait can be
		// replaced before the click on it. The action did not happen then;
		// do the step again.
		for try := 0; try < 3 && err != nil && strings.Contains(err.Error(), "Could not find node with given id"); try++ {
			err = chromedp.Do(sctx, actions...)
		}
		if err != nil {
			fail(what, err)
		}
	}
	text := func(what, sel string) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		s, err := chromedp.Run(sctx, chromedp.Text(sel))
		if err != nil {
			fail(what, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		step("settle", chromedp.Sleep(300*time.Millisecond), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`document.getElementById('toast').classList.add('hidden')`)(ctx, t)
			return err
		}))
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
		if err != nil {
			fail("screenshot "+name, err)
		}
		path := filepath.Join(shots, "console-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
	view := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`location.hash = '#`+name+`'`)(ctx, t)
			return err
		})
	}

	// Cluster: the servers, by type.
	start := time.Now()
	step("open the console",
		chromedp.Navigate(tc.srv.URL+"/#token="+tc.console.Token()),
		chromedp.WaitVisible(`tr[data-server="connector-1"]`),
		chromedp.WaitVisible(`tr[data-server="room-1"]`),
		chromedp.WaitVisible(`tr[data-server="flaky-1"]`),
		chromedp.WaitVisible(`#conn.on`),
	)
	t.Logf("servers listed %v after the page was asked for", time.Since(start).Round(time.Millisecond))
	row := text("read the cluster", `tr[data-server="connector-1"]`)
	if !strings.Contains(row, "frontend") || !strings.Contains(row, "region=test") {
		t.Errorf("connector row: %q", row)
	}

	// A server joins while the page is open.
	startApp(t, tc.front, "room", "room-2", func(app *nopal.App) error { return cluster.SetupRoom(app) })
	step("see room-2 join", chromedp.WaitVisible(`tr[data-server="room-2"]`))
	if feed := text("read the cluster feed", `#cluster-feed`); !strings.Contains(feed, "joined") || !strings.Contains(feed, "room-2") {
		t.Errorf("cluster feed: %q", feed)
	}

	// Users: a user joins the room while the page is open.
	cl, uid := tc.chatter(t)
	step("see the user join",
		view("users"),
		chromedp.WaitVisible(`#users-table tr[data-uid="`+uid+`"]`),
		chromedp.WaitVisible(`#u-online`),
		chromedp.Click(`#users-table tr[data-uid="`+uid+`"]`),
		chromedp.WaitVisible(`#user-panel #kick-btn`),
	)
	if feed := text("read the user feed", `#user-feed`); !strings.Contains(feed, uid) || !strings.Contains(feed, "bound") {
		t.Errorf("user feed: %q", feed)
	}
	step("back to the cluster", view("cluster"), chromedp.WaitVisible(`#cluster-feed`))
	shot("cluster")
	step("users", view("users"), chromedp.WaitVisible(`#user-panel`))
	shot("users")

	// Groups: the room and its member, and a group with a TTL.
	gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
	defer gcancel()
	if err := tc.room.Groups().CreateWithTTL(gctx, "lobby", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ana", "bea", "carl"} {
		if err := tc.room.Groups().Add(gctx, "lobby", u); err != nil {
			t.Fatal(err)
		}
	}
	step("see the room",
		view("groups"),
		chromedp.WaitVisible(`#groups-table tr[data-group="lobby"]`),
		chromedp.WaitVisible(`#groups-table tr[data-group="room"]`),
		chromedp.Click(`#groups-table tr[data-group="room"]`),
		chromedp.WaitVisible(`#group-members li code`),
	)
	if members := text("read the members", `#group-members`); !strings.Contains(members, uid) {
		t.Errorf("members of room: %q", members)
	}
	shot("groups")

	// Jobs: a failed job moves to succeeded after "Retry". The view is
	// open while the job fails: its row and its dead letter arrive live
	// (the dead letter is published after the record turns failed).
	step("open the jobs view", view("jobs"), chromedp.WaitVisible(`#dlq-table td.empty`))
	tc.failedJob(t, "grant-ui-1")
	step("see the failed job",
		chromedp.WaitVisible(`#jobs-table tr[data-jid="grant-ui-1"]`),
		chromedp.Click(`#jobs-table tr[data-jid="grant-ui-1"]`),
		chromedp.WaitVisible(`#job-panel[data-state="failed"] #job-retry`),
		chromedp.WaitVisible(`#dlq-table code`),
	)
	shot("jobs") // the failed attempt, its dead letter, the Retry button
	tc.failing.Store(false)
	step("retry it",
		chromedp.Click(`#job-retry`),
		chromedp.WaitVisible(`#job-panel[data-state="succeeded"]`),
		chromedp.WaitVisible(`#jobs-table tr[data-jid="grant-ui-1"] .badge.succeeded`),
		chromedp.WaitVisible(`#dlq-table td.empty`), // its dead letter is gone
	)

	// Traffic: a chat message appears live; its join's hops side by side.
	if err := cl.Notify(ctx, "room.room.message", map[string]string{"name": "ana", "content": "hello from the browser test"}); err != nil {
		t.Fatal(err)
	}
	step("see the chat message",
		view("traffic"),
		chromedp.WaitVisible(`#traffic-table tr[data-route="room.room.message"]`),
	)
	if lines := text("read the traffic", `#traffic-table`); !strings.Contains(lines, "hello from the browser test") {
		t.Errorf("traffic: %.500q", lines)
	}
	step("hops of the join",
		chromedp.Click(`#traffic-table tr[data-route="room.room.join"][data-kind="call"]`),
		chromedp.WaitVisible(`#hops .hop .badge.reply`),
	)
	shot("traffic")
}
