"""Shared fixtures: paths to ../shared/data and a private cache folder per test session."""

from __future__ import annotations

import logging
import os
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
    # Runs of other test sessions on this host must not count as sharing it (engine.host_runs).
    os.environ["OHEM_RUNS_REGISTRY"] = str(tmp_path_factory.mktemp("ohem_runs"))


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic VOC root (12 trainval, 6 test images), shared by the tests of a session."""
    from ohemcli.data.synthetic import generate_synthetic

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
