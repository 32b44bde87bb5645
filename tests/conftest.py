"""Shared fixtures (paths to ../shared/data, a private cache folder per test session) and the
fast tier: every test that trains a model is marked ``slow``, and one that is not cannot train."""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import small_synth_settings

# ../shared/data beside the checkout; OHEM_SHARED_DATA names another place (a git worktree's
# parent is not the project's).
SHARED_DATA = Path(
    os.environ.get("OHEM_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def shared_root(name: str) -> Path:
    """A data set under ../shared/data, or skip the test with the reason."""
    root = SHARED_DATA / name
    if not root.is_dir():
        pytest.skip(f"{root} is absent (the real VOC-format test data lives in ../shared/data)")
    return root


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep caches (synthetic set, proposals) out of the user's ~/.cache during tests."""
    import os

    os.environ["OHEM_CACHE"] = str(tmp_path_factory.mktemp("ohem_cache"))
    # Runs of other test sessions on this host must not count as sharing it (runs.host_runs).
    os.environ["OHEM_RUNS_REGISTRY"] = str(tmp_path_factory.mktemp("ohem_runs"))


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic VOC root (12 trainval, 6 test images), shared by the tests of a session."""
    from ohemcli.data.synthetic.generate import generate_synthetic

    root = tmp_path_factory.mktemp("synth") / "voc"
    generate_synthetic(root, trainval=12, test=6, seed=3, show_progress=False)
    return root


@pytest.fixture()
def small_config(small_synth: Path):
    """A CPU config that trains a few iterations in seconds on ``small_synth``."""
    from ohemcli.config import load_config

    def make(**overrides):
        base = {
            **small_synth_settings(small_synth),
            "sampler.batch_rois": 32,
            # the tests size their own budget: every sampler at batch_rois (its reference's
            # 64 or 512 RoIs per image would only make them slower)
            "sampler.regime": "common",
            "train.iters": 30,
            "train.lr": 0.01,
            "train.lr_steps": [25],
            "train.warmup_iters": 5,
            "train.log_every": 5,
            "train.checkpoint_every": 10,
            "train.eval_points": 0,
        }
        base.update(overrides)
        return load_config(None, base)

    return make


@pytest.fixture()
def warnings_seen(caplog):
    """The ohemcli logger's records, at WARNING and above: the CLI sets propagate=False on that
    logger, so caplog alone misses them once any CLI test has run in the same process."""
    logger = logging.getLogger("ohemcli")
    propagate = logger.propagate
    logger.propagate = False  # else a record reaches caplog twice: here and through the root
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.propagate = propagate


# The package's training entry points. A test (or a fixture or helper of its module) that calls one
# of them by a name imported from ohemcli trains a model, so it belongs to the slow tier.
TRAINING_CALLS = frozenset({"train", "Trainer", "compare", "bench_samplers"})


@functools.cache
def _training_functions(path: str) -> frozenset[str]:
    """Names of the functions in the file ``path`` that call a training entry point, directly
    or through another function of the same file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ohemcli")
        for alias in node.names
        if alias.name in TRAINING_CALLS
    }
    calls: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            called = {
                sub.func.id
                for sub in ast.walk(node)
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
            }
            calls.setdefault(node.name, set()).update(called)
    trains = {name for name, called in calls.items() if called & imported}
    grew = True
    while grew:  # helpers that call helpers that train
        more = {name for name, called in calls.items() if called & trains} - trains
        trains |= more
        grew = bool(more)
    return frozenset(trains)


def _trains(func: object) -> bool:
    """Whether the test or fixture function ``func`` calls a training entry point (statically)."""
    func = inspect.unwrap(func)
    try:
        path = inspect.getsourcefile(func)
    except TypeError:
        return False
    return bool(path) and func.__name__ in _training_functions(path)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that trains, by itself or through one of its fixtures."""
    for item in items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("slow"):
            continue
        fixtures = item._fixtureinfo.name2fixturedefs.values()
        if _trains(item.function) or any(_trains(defs[-1].func) for defs in fixtures):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tests_never_train(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test outside the slow tier fails if it runs a training step after all: the marking
    above reads calls, and a CLI command that trains (``ohem train`` through a runner) is a
    string to it, so such a test needs its ``slow`` mark by hand."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    from ohemcli.engine import train as engine_train

    steps: list[int] = []
    real_step = engine_train.Trainer.step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return real_step(self, *args, **kwargs)

    engine_train.Trainer.step = counted
    try:
        yield
    finally:
        engine_train.Trainer.step = real_step
    if steps:
        pytest.fail(f"{request.node.nodeid} trains ({len(steps)} steps): mark it slow")
