"""The fast tier's marking (tests/conftest.py): which test functions count as training."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import _training_functions

TESTS = Path(__file__).resolve().parent


def test_training_is_found_through_helpers_and_aliases_not_through_methods(tmp_path):
    source = tmp_path / "test_example.py"
    source.write_text(
        "from ohemcli.engine.train import train\n"
        "from ohemcli.launch.compare import compare as run_compare\n"
        "\n"
        "def _helper(cfg):\n"
        "    return train(cfg, 'run')\n"
        "\n"
        "def test_through_a_helper(cfg):\n"
        "    _helper(cfg)\n"
        "\n"
        "def test_a_module_method(model):\n"
        "    model.train()\n"
        "\n"
        "def test_an_alias(cfg):\n"
        "    run_compare(cfg)\n"
    )
    assert _training_functions(str(source)) == {"_helper", "test_through_a_helper", "test_an_alias"}


def test_the_tests_that_trained_in_the_fast_tier_are_found():
    """The files that the hand-set marks missed: a test or the fixture it uses trains."""
    found = {
        name: _training_functions(str(TESTS / name))
        for name in (
            "samplers/test_plugins.py",
            "engine/test_coco_equivalence.py",
            "evaluation/test_box_norm_eval.py",
        )
    }
    assert found["samplers/test_plugins.py"] >= {"test_resume_restores_the_plugin_state"}
    assert found["engine/test_coco_equivalence.py"] >= {
        "test_bccd_as_voc_and_as_coco_train_to_identical_weights_and_map"
    }
    assert "data_norm_run" in found["evaluation/test_box_norm_eval.py"]  # a fixture that trains
