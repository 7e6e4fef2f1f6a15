# Conveniences; the scripts are the source of truth.
.PHONY: build test demo bench
build:
	go build -o bin/moat ./cmd/moat
test:
	./scripts/test.sh
demo:
	./scripts/demo.sh
bench:
	./bench/run.sh
