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

# 2 seeds x 3 samplers, each trained close to convergence (README) from the pretrained tiny
# backbone (synth_tiny preset), two runs at a time with one thread each, on any machine (CPU runs
# match only at equal thread counts, so the README's table is what every machine gets): about
# 8.5 min from an empty cache on 2 cores
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PYTHON) -m ohemcli compare --data synth --config synth_tiny --seeds 1,2 --jobs 2 --eval-points 4 --out runs/demo

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
