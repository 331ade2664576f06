# API throughput and latency: POST /v1/traces at 1/16/64 clients beside the raw storage put
# rate, and an execution through the API against the runner plugin called directly.
.PHONY: bench-api
bench-api:
	$(GO) test -run '^$$' -bench BenchmarkAPITraces -benchtime 1x -count 1 ./host/e2e
