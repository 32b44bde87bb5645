# Two commands do all of the setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
STAMP := .install.stamp

.PHONY: install test demo lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest -q

demo: $(STAMP)
	ohem compare --data synth --config synth_tiny --out runs/demo

lint: $(STAMP)
	ruff check ohemcli tests benchmarks
	ruff format --check ohemcli tests benchmarks

format: $(STAMP)
	ruff format ohemcli tests benchmarks
	ruff check --fix ohemcli tests benchmarks

bench: $(STAMP)
	$(PYTHON) benchmarks/bench_metrics.py

clean:
	rm -rf $(STAMP) .pytest_cache build *.egg-info
