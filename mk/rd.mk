# RD core (host/rd): POT reference fixtures and the Go-versus-POT benchmark.
# Both need Debian's python3-pot (POT 0.8.2) for /usr/bin/python3; it is installed when
# missing (as root, as on these machines and in CI).

RD_PYTHON ?= /usr/bin/python3
RD_SIZES  ?= 100,200,400,800

.PHONY: rd-pot rd-fixtures bench-rd

rd-pot:
	@$(RD_PYTHON) -c 'import ot' 2>/dev/null || { \
		echo "installing python3-pot (POT) with apt-get"; \
		apt-get install -y -q python3-pot >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-pot >/dev/null; }; \
	}
	@$(RD_PYTHON) -c 'import ot; print("POT", ot.__version__)'

# Regenerate host/rd/testdata/pot_fixtures.json (committed; tests only read it).
rd-fixtures: rd-pot
	$(RD_PYTHON) scripts/rd/gen_fixtures.py host/rd/testdata/pot_fixtures.json

# One line per size: n=800 go=1.92 pot=4.95 ratio=0.39 (seconds); details on stderr.
bench-rd: rd-pot
	$(GO) run ./host/rd/internal/cmd/rdbench -sizes $(RD_SIZES) -python $(RD_PYTHON) -script scripts/rd/bench_pot.py
