# Python runner plugin (plugins/runner-python): benchmarks. Its tests run with `make test`.
.PHONY: bench-python

# print(1) through the plugin vs spawning /usr/bin/python3, session cold start (and each
# step of opening a session), the memory of 50 sessions each holding a worker; then
# through the real daemon: cold start with the runner pool and with pool = 0, and print(1)
# in a warm session through the API. Each prints its figures and ratios.
bench-python:
	$(GO) test -run '^$$' -bench 'Print$$|PrintInProcess' -benchtime 2000x -count 1 ./plugins/runner-python
	$(GO) test -run '^$$' -bench 'PrintAfterIdle' -benchtime 1x -count 1 ./plugins/runner-python
	$(GO) test -run '^$$' -bench 'WakeAfterIdle' -benchtime 1x -count 1 ./internal/latency
	$(GO) test -run '^$$' -bench 'ColdStart|OpenSessionSteps' -benchtime 30x -count 1 ./plugins/runner-python
	$(GO) test -run '^$$' -bench 'Memory50' -benchtime 1x -count 1 -timeout 20m ./plugins/runner-python
	$(GO) test -run '^$$' -bench 'PythonColdStart' -benchtime 30x -count 1 ./host/e2e
	$(GO) test -run '^$$' -bench 'PythonPrintAPI' -benchtime 2000x -count 1 ./host/e2e
