# Nopal: `make run` starts the chat example, `make test` runs every test.
GO        ?= go
FUZZTIME  ?= 30s
BENCHTIME ?= 5s

.PHONY: run test bench fuzz lint build proto

# The cluster chat in one process: a connector frontend and a room backend on
# an embedded NATS server, which listens on 127.0.0.1:4222 for `node replay`.
run:
	$(GO) run ./cmd/node serve -nats-listen 127.0.0.1:4222

build:
	$(GO) build -o bin/node ./cmd/node

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 8m ./...

# Runs the benchmark suite and prints one table; see BENCHMARKS.md.
bench:
	$(GO) run ./bench suite -duration $(BENCHTIME)

# Runs every fuzz target for FUZZTIME each (the seed corpora also run in `make test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# Regenerates stream/envelope.pb.go (needs protoc and protoc-gen-go v1.36.12).
proto:
	protoc --go_out=. --go_opt=paths=source_relative stream/envelope.proto
