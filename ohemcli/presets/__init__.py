"""The YAML presets, shipped inside the package so that an installed ``ohem`` finds them.

``experiments/README.md`` documents which preset reproduces which result.
"""

from __future__ import annotations

from importlib import resources

from ohemcli.config import ExperimentConfig, parse_config
from ohemcli.errors import UserError, quote

CPU_PRESET = "cpu_pretrained"  # your own VOC-format data on a CPU (README: "Your own data")
GPU_PRESET = "voc07_vgg16"  # the paper's setting
SYNTH_PRESET = "synth_tiny"  # the built-in synthetic set


def preset_names() -> list[str]:
    """Names of the shipped presets (file names without ``.yaml``), sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset; an unknown name is a one-line error naming --config."""
    if name not in preset_names():
        raise UserError(
            f"--config: {quote(name)} is neither a YAML file nor a preset "
            f"(presets: {', '.join(preset_names())})"
        )
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def load_preset(name: str) -> ExperimentConfig:
    """A shipped preset as a validated config."""
    return parse_config(preset_text(name), f"preset {name}")
