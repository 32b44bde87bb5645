"""The YAML presets, shipped inside the package so that an installed ``ohem`` finds them.

``experiments/README.md`` documents which preset reproduces which result.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ohemcli.config import ExperimentConfig, parse_config
from ohemcli.errors import UserError, quote
from ohemcli.fileio import read_text

CPU_PRESET = "cpu_pretrained"  # your own VOC-format data on a CPU (docs/data.md)
GPU_PRESET = "voc07_vgg16"  # the paper's setting
SYNTH_PRESET = "synth_tiny"  # the built-in synthetic set
# --detector faster-rcnn: the CPU setting (synth or your data) and Faster R-CNN's VOC07 setting
FASTER_CPU_PRESET = "faster_tiny"
FASTER_GPU_PRESET = "faster_vgg16"


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


def preset_for(data: str | None, on_cuda: bool, detector: str | None = None) -> str:
    """The preset of a config not named: the synthetic set's own, else the paper's on CUDA and
    the CPU preset without it. Under ``detector`` faster-rcnn: Faster R-CNN's VOC07 setting on
    CUDA, and its CPU setting without CUDA or on the synthetic set."""
    if detector == "faster-rcnn":
        synth = data in (None, "synth")
        return FASTER_GPU_PRESET if on_cuda and not synth else FASTER_CPU_PRESET
    if data in (None, "synth"):
        return SYNTH_PRESET
    return GPU_PRESET if on_cuda else CPU_PRESET


def config_source(config: str | Path) -> tuple[str, str]:
    """The YAML text that ``config`` names (a ``.yaml`` file, any existing file, or a preset)
    and the name that errors give it."""
    if Path(config).suffix in (".yaml", ".yml") or Path(config).exists():
        return read_text(config, "config file"), str(config)
    return preset_text(str(config)), f"preset {config}"
