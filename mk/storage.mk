# Storage backends (plugins/storage-*): cross-backend benchmark, crash-safety harness,
# PostgreSQL conformance. Their tests run with `make test`; PostgreSQL needs
# LIMIT_TEST_POSTGRES_URL (`source .ci/setup.d/postgres.sh` starts a server and sets it).
.PHONY: bench-storage crashtest check-postgres storage-postgres-check

STORAGE_BENCH_CELL ?= 1s
CRASHTEST_KILLS    ?= 500

# One table: put, get, scan, batch through each backend's plugin at 1 and 16 callers,
# p50/p99, throughput, amortised cost, each backend's durable-write goal MET or MISSED.
bench-storage:
	LIMIT_STORAGEBENCH_CELL=$(STORAGE_BENCH_CELL) $(GO) test -run '^$$' -bench BenchmarkBackends -benchtime 1x -count 1 -timeout 30m ./internal/storagebench

# The crash-safety harness at full size: CRASHTEST_KILLS SIGKILLs per backend (CI runs a
# few dozen within `make test`), then the disk-full check. Add CRASHTEST_SEED=N to repeat
# a run. One summary line per backend.
crashtest:
	LIMIT_CRASHTEST_KILLS=$(CRASHTEST_KILLS) LIMIT_CRASHTEST_SEED=$(CRASHTEST_SEED) \
		$(GO) test -count 1 -timeout 180m -run 'TestCrashSafety|TestDiskFull' -v ./internal/crashtest

# The SDK conformance suite through the PostgreSQL plugin's binary, against
# LIMIT_TEST_POSTGRES_URL (the Makefile's check-plugins leaves postgres out).
check-postgres: build
	@test -n "$$LIMIT_TEST_POSTGRES_URL" || { echo "check-postgres: set LIMIT_TEST_POSTGRES_URL (source .ci/setup.d/postgres.sh)"; exit 1; }
	$(BIN)/limitctl plugin check --kind storage --env "DATABASE_URL=$$LIMIT_TEST_POSTGRES_URL" $(PLUGINDIR)/limit-storage-postgres

# Part of `make test`: the PostgreSQL plugin check when a server is configured; otherwise a
# banner saying the PostgreSQL suite was skipped, and a failure in CI, where it must run.
test: storage-postgres-check
storage-postgres-check: build
	@if [ -n "$$LIMIT_TEST_POSTGRES_URL" ]; then \
		$(MAKE) --no-print-directory check-postgres; \
	elif [ "$$CI" = "true" ]; then \
		echo "FAIL: CI=true but LIMIT_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run in CI (.ci/setup.d/postgres.sh sets it)"; \
		exit 1; \
	else \
		echo "################################################################################"; \
		echo "#  PostgreSQL suite SKIPPED: LIMIT_TEST_POSTGRES_URL is not set, so the"; \
		echo "#  storage-postgres plugin, its crash test and its benchmark rows did not run."; \
		echo "#  Run  source .ci/setup.d/postgres.sh  (as root) first to include them."; \
		echo "################################################################################"; \
	fi
