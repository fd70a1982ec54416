package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dashboardFile is the Grafana dashboard the repository ships.
const dashboardFile = "../../metrics/grafana/nopal.json"

// grafanaDashboard is the part of Grafana's JSON model the test reads.
type grafanaDashboard struct {
	Title      string         `json:"title"`
	UID        string         `json:"uid"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Definition string          `json:"definition"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// promQuery is what one PromQL expression needs from a scrape.
type promQuery struct {
	where    string              // panel and target, for messages
	metrics  []string            // every metric name it selects
	matchers map[string][]string // metric -> its exact `label="value"` matchers
	labels   []string            // labels it groups by (by, without, on, label_values)
}

var (
	rePromGroup  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	rePromLabelV = regexp.MustCompile(`label_values\(\s*(.*?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	rePromSel    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	rePromMatch  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"`)
	rePromRange  = regexp.MustCompile(`\[[^\]]*\]`)
	rePromString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rePromIdent  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = []string{"bool", "and", "or", "unless", "offset", "inf", "nan", "group_left", "group_right", "by", "without", "on", "ignoring"}
)

// grafanaVars substitutes the dashboard's variables as Grafana would with
// the namespace ns and every game and server type.
func grafanaVars(expr, ns string) string {
	return strings.NewReplacer(
		"${namespace}", ns, "$namespace", ns,
		"$__rate_interval", "1m", "${__rate_interval}", "1m",
		"$game", ".*", "${game}", ".*",
		"$serverType", ".*", "${serverType}", ".*",
	).Replace(expr)
}

// parsePromQL finds the metric names, exact matchers and grouping labels
// of a PromQL expression (or a label_values(...) variable query): names
// are the identifiers left once strings, ranges, label braces and grouping
// clauses are out and that do not call a function.
func parsePromQL(where, expr string) (promQuery, error) {
	q := promQuery{where: where, matchers: map[string][]string{}}
	if strings.Contains(expr, "$") {
		return q, fmt.Errorf("%s: a variable is left in %q", where, expr)
	}
	for _, m := range rePromLabelV.FindAllStringSubmatch(expr, -1) {
		q.labels = append(q.labels, m[2])
	}
	expr = rePromLabelV.ReplaceAllString(expr, "label_values($1)")
	for _, m := range rePromGroup.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.labels = append(q.labels, l)
			}
		}
	}
	expr = rePromGroup.ReplaceAllString(expr, " ")
	for _, m := range rePromSel.FindAllStringSubmatch(expr, -1) {
		for _, mm := range rePromMatch.FindAllStringSubmatch(m[2], -1) {
			if mm[2] == "=" {
				q.matchers[m[1]] = append(q.matchers[m[1]], mm[1]+`="`+mm[3]+`"`)
			}
		}
	}
	expr = rePromSel.ReplaceAllString(expr, "$1 ")
	expr = rePromString.ReplaceAllString(expr, " ")
	expr = rePromRange.ReplaceAllString(expr, " ")
	for _, loc := range rePromIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.') {
			continue // the exponent or unit of a number (1e3)
		}
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") {
			continue // a function or an aggregation
		}
		if slices.Contains(promKeywords, strings.ToLower(name)) {
			continue
		}
		if !slices.Contains(q.metrics, name) {
			q.metrics = append(q.metrics, name)
		}
	}
	if len(q.metrics) == 0 {
		return q, fmt.Errorf("%s: no metric in %q", where, expr)
	}
	return q, nil
}

// loadDashboard reads the dashboard and checks its shape.
func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard needs a title and a uid")
	}
	return d
}

// dashboardQueries returns every PromQL expression of the dashboard, its
// variables' queries included, with the variables substituted.
func dashboardQueries(t *testing.T, d grafanaDashboard, ns string) []promQuery {
	t.Helper()
	var out []promQuery
	add := func(where, expr string) {
		q, err := parsePromQL(where, grafanaVars(expr, ns))
		if err != nil {
			t.Error(err)
			return
		}
		out = append(out, q)
	}
	ids := map[int]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource must be the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, "${namespace}") {
					t.Errorf("panel %q, query %s: %q does not use ${namespace}", p.Title, tg.RefID, tg.Expr)
				}
				add(fmt.Sprintf("panel %q, query %s", p.Title, tg.RefID), tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Definition == "" {
			t.Errorf("variable %s: no definition", v.Name)
			continue
		}
		add("variable "+v.Name, v.Definition)
	}
	return out
}

// promSeries is a scrape's samples: metric name -> the label sets seen.
type promSeries map[string][]map[string]string

func parseScrape(text string) promSeries {
	out := promSeries{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			if end := strings.LastIndex(rest, "}"); end > 0 {
				for _, m := range rePromMatch.FindAllStringSubmatch(rest[1:end], -1) {
					labels[m[1]] = m[3]
				}
			}
		}
		out[name] = append(out[name], labels)
	}
	return out
}

// missing lists what q needs that the scrape lacks.
func (s promSeries) missing(q promQuery) []string {
	var out []string
	for _, m := range q.metrics {
		series, ok := s[m]
		if !ok {
			out = append(out, fmt.Sprintf("%s: metric %s not scraped", q.where, m))
			continue
		}
		for _, want := range q.matchers[m] {
			k, v, _ := strings.Cut(want, "=")
			v = strings.Trim(v, `"`)
			if !slices.ContainsFunc(series, func(l map[string]string) bool { return l[k] == v }) {
				out = append(out, fmt.Sprintf("%s: no series %s{%s}", q.where, m, want))
			}
		}
	}
	for _, l := range q.labels {
		found := false
		for _, m := range q.metrics {
			found = found || slices.ContainsFunc(s[m], func(ls map[string]string) bool { _, ok := ls[l]; return ok })
		}
		if !found {
			out = append(out, fmt.Sprintf("%s: no series of %v has the label %q", q.where, q.metrics, l))
		}
	}
	return out
}

// Every query of the shipped Grafana dashboard selects metrics, label
// values and labels that a running node exports, once it has served some
// requests (one failed) and a reliable-RPC job.
func TestGrafanaDashboardQueriesMetricsOfARunningNode(t *testing.T) {
	d := loadDashboard(t)
	queries := dashboardQueries(t, d, "nopal")
	if len(queries) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(queries))
	}
	n := startServe(t, "-type", "connector,room,rewards", "-metrics-addr", "127.0.0.1:0", "-game", "chat")
	if n.metrics == "" {
		t.Fatal("serve did not say where it serves metrics")
	}
	out := runClient(t, n.tcp,
		"request room.room.join {}",
		"request room.room.nosuchroute {}",
		`request claims.claim {"reward":"gold"}`,
		"quit")
	if !strings.Contains(out, "jid") {
		t.Fatalf("the claim enqueued no job:\n%s", out)
	}
	// The job runs, and the handlers record their timings, after the
	// client's answers: scrape until everything is there.
	var problems []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := parseScrape(scrape(t, n.metrics))
		problems = problems[:0]
		for _, q := range queries {
			problems = append(problems, s.missing(q)...)
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// The query parser finds names, matchers and grouping labels, and skips
// functions, strings and ranges.
func TestGrafanaParsePromQL(t *testing.T) {
	q, err := parsePromQL("t", `histogram_quantile(0.99, sum by (le, route) (rate(ns_x_bucket{a="b",c=~"d|e"}[1m]))) / on(route) group_left ns_y + 1e3`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ns_x_bucket", "ns_y"}; !slices.Equal(q.metrics, want) {
		t.Errorf("metrics %v, want %v", q.metrics, want)
	}
	if want := []string{"le", "route", "route"}; !slices.Equal(q.labels, want) {
		t.Errorf("labels %v, want %v", q.labels, want)
	}
	if got := q.matchers["ns_x_bucket"]; !slices.Equal(got, []string{`a="b"`}) {
		t.Errorf("matchers %v", got)
	}
	q, err = parsePromQL("t", `label_values(ns_sys_goroutines{game=~".*"}, serverType)`)
	if err != nil || !slices.Equal(q.metrics, []string{"ns_sys_goroutines"}) || !slices.Equal(q.labels, []string{"serverType"}) {
		t.Errorf("label_values: %+v, %v", q, err)
	}
	if _, err := parsePromQL("t", `rate(x[$__rate_interval])`); err == nil {
		t.Error("a variable left in a query went unnoticed")
	}
}
