"""Shared fixtures: paths to ../shared/data and a private cache folder per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
