# Nopal: `make run` starts the chat example, `make test` runs every test.
GO        ?= go
FUZZTIME  ?= 30s
FUZZSHORT ?= 5000x
BENCHTIME ?= 5s

.PHONY: run test bench fuzz fuzz-short fuzz-run lint build proto

# The cluster chat in one process: a connector frontend and a room backend on
# an embedded NATS server, which listens on 127.0.0.1:4222 for `node replay`.
run:
	$(GO) run ./cmd/node serve -nats-listen 127.0.0.1:4222

build:
	$(GO) build -o bin/node ./cmd/node

# go vet, every test with the race detector, and a short fuzz pass.
test: fuzz-short
	$(GO) vet ./...
	$(GO) test -race -timeout 8m ./...

# Runs the benchmark suite and prints one table; see BENCHMARKS.md.
bench:
	$(GO) run ./bench suite -duration $(BENCHTIME)

# Runs every fuzz target for FUZZTIME each (the seed corpora also run in `make test`).
fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUN=$(FUZZTIME)

# Runs every fuzz target for FUZZSHORT each, as `make test` does: 5000
# inputs each, 11 targets in about 30 s (each run also spends ~1 s starting
# and replaying its corpus). A count, not a duration: a duration can end
# while a fuzz worker is busy, and Go then fails the run with "context
# deadline exceeded" though nothing was found.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUN=$(FUZZSHORT)

# Every `func Fuzz...` of every _test.go file (found with grep: nothing to
# build to list them), one `go test -fuzz` each: -fuzz takes one target of
# one package. A failing input is written to that package's testdata/fuzz.
fuzz-run:
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$(dirname $$f) $$t ($(FUZZRUN))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZRUN) $$(dirname $$f) || exit 1; \
	  done; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# Regenerates stream/envelope.pb.go (needs protoc and protoc-gen-go v1.36.12).
proto:
	protoc --go_out=. --go_opt=paths=source_relative stream/envelope.proto
