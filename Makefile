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

# 2 seeds x 3 samplers from the pretrained tiny backbone (synth_tiny preset), two runs at a time
# (each with half of the cores): about 8 min from an empty cache on 2 cores
demo: $(STAMP)
	$(PYTHON) -m ohemcli compare --data synth --config synth_tiny --seeds 1,2 --jobs 2 --out runs/demo

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
