# Traces and provenance (host/trace): benchmarks and test vectors. Its tests run with `make test`.
.PHONY: bench-trace trace-es6-vectors

# Create versus a raw storage put (memory and the storage-bolt plugin, 1/16/64 clients, ratio
# printed), appends (own trace; 16 writers on one trace), bundle verification, canonical JSON.
bench-trace:
	$(GO) test -run '^$$' -bench 'Create' -benchtime 8x -count 1 ./host/trace
	$(GO) test -run '^$$' -bench 'Append|VerifyBundle|Canonicalize' -benchtime 2s -count 1 ./host/trace

# Regenerate host/trace/testdata/es6_numbers.txt (committed; tests only read it) from node's
# JSON.stringify, the ECMAScript reference for RFC 8785 number serialization.
trace-es6-vectors:
	cd host/trace/testdata && node gen_es6_numbers.js > es6_numbers.txt
