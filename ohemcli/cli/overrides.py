"""Command-line options onto dotted config keys: the one table, and the config it builds.

``ohem train``, ``compare`` and ``bench`` hand their parameters (``ctx.params``) to
:func:`build_config`. Each parameter that :data:`OPTION_KEYS` names and the user gave (not None)
overrides its config key over the YAML file or preset of ``--config``, through
:func:`ohemcli.config.parse_config`; the other parameters (``--out``, ``--seeds``, ...) are the
command's own. To give a config key an option: its type in :mod:`ohemcli.cli.option_types`, one
line here, and the parameter in each command that offers it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any

from ohemcli.config import DEFAULT_FROZEN_CONVS, TEST_PROTOCOLS, ExperimentConfig, parse_config
from ohemcli.errors import UserError, quote
from ohemcli.fileio import read_text
from ohemcli.presets import CPU_PRESET, GPU_PRESET, SYNTH_PRESET, preset_text
from ohemcli.samplers import SAMPLERS
from ohemcli.samplers.plugins import is_plugin_name

# A command's parameter name -> the config key that its option sets (``--ohem-nms-iou`` is the
# parameter ``ohem_nms_iou``).
OPTION_KEYS: dict[str, str] = {
    "data": "data.root",
    "images": "data.images",
    "keep_empty": "data.keep_empty",
    "workers": "data.workers",
    "use_difficult": "data.use_difficult",
    "train_images": "data.train_images",
    "backbone": "model.backbone",
    "pretrained": "model.pretrained",
    "weights": "model.weights",
    "roi_op": "model.roi_op",
    "frozen_convs": "model.frozen_convs",
    "sampler": "sampler.name",
    "regime": "sampler.regime",
    "ohem_nms": "sampler.ohem_nms",
    "ohem_nms_iou": "sampler.ohem_nms_iou",
    "ohem_nms_scope": "sampler.ohem_nms_scope",
    "ohem_loss": "sampler.ohem_loss",
    "rank_dtype": "sampler.rank_dtype",
    "mine_every": "sampler.mine_every",
    "hnm_fp_thresh": "sampler.hnm_fp_thresh",
    "hnm_pool_per_image": "sampler.hnm_pool_per_image",
    "hnm_pool": "sampler.hnm_pool",
    "libra_bins": "sampler.libra_bins",
    "bg_lo": "sampler.bg_lo",
    "iters": "train.iters",
    "seed": "train.seed",
    "device": "train.device",
    "amp": "train.amp",
    "lr": "train.lr",
    "eval_points": "train.eval_points",
    "checkpoint_every": "train.checkpoint_every",
    "tensorboard": "train.tensorboard",
    "images_per_batch": "train.images_per_batch",
    "max_dets": "eval.max_dets",
    "score_thresh": "eval.score_thresh",
    "test_protocol": "eval.protocol",
}


def option_name(param: str) -> str:
    """How a parameter is spelled on the command line: ``ohem_nms_iou`` -> ``--ohem-nms-iou``."""
    return "--" + param.replace("_", "-")


def _plain(value: Any) -> Any:
    """A parameter's value as the config holds it: an Enum's value, a path as text."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def given_overrides(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``--option`` -> ``{dotted key: value}`` for every parameter in the table that was given."""
    return {
        option_name(name): {OPTION_KEYS[name]: _plain(value)}
        for name, value in params.items()
        if name in OPTION_KEYS and value is not None
    }


# --backbone NAME (another than the YAML's) means these weights unless --pretrained/--weights say
# otherwise: the ImageNet weights that download on their own, and tiny's shipped ones.
BACKBONE_WEIGHTS = {"vgg16": "torchvision", "resnet18": "torchvision", "tiny": "shipped"}


def _another_backbone_means_its_weights(
    given: dict[str, dict[str, Any]], base: ExperimentConfig
) -> None:
    """``--backbone NAME`` naming another backbone than the YAML's also sets model.pretrained to
    that backbone's weights (:data:`BACKBONE_WEIGHTS`) in ``given``, unless --pretrained,
    --weights or the YAML's weights say so: the YAML's source may not fit the new backbone."""
    chosen = given.get("--backbone", {}).get("model.backbone")
    told = bool({"--pretrained", "--weights"} & set(given)) or bool(base.model.weights)
    if chosen in BACKBONE_WEIGHTS and chosen != base.model.backbone and not told:
        given["--backbone"]["model.pretrained"] = BACKBONE_WEIGHTS[chosen]


def _test_protocol_and_its_limits(given: dict[str, dict[str, Any]]) -> None:
    """``--test-protocol NAME`` also sets the limits NAME fixes (eval.max_dets, score_thresh);
    ``--max-dets``/``--score-thresh`` make the protocol "custom". Both at once is an error."""
    limits = [o for o in ("--max-dets", "--score-thresh") if o in given]
    if "--test-protocol" in given and limits:
        raise UserError(
            f"--test-protocol and {'/'.join(limits)}: give one (a named protocol fixes its limits)"
        )
    if limits:
        given[limits[0]]["eval.protocol"] = "custom"
    name = given.get("--test-protocol", {}).get("eval.protocol")
    if name in TEST_PROTOCOLS:
        max_dets, score_thresh = TEST_PROTOCOLS[name]
        given["--test-protocol"].update(
            {"eval.max_dets": max_dets, "eval.score_thresh": score_thresh}
        )


def _another_backbone_freezes_its_own(
    given: dict[str, dict[str, Any]], base: ExperimentConfig
) -> None:
    """``--backbone`` naming another backbone than the YAML's drops the YAML's
    ``model.frozen_convs`` (a count of that backbone's conv layers), unless --frozen-convs is
    given: the new backbone then freezes its own default (vgg16 conv1-conv2, resnet18 conv1 and
    layer1, tiny none)."""
    backbone = given.get("--backbone", {})
    chosen = backbone.get("model.backbone")
    if chosen is not None and chosen != base.model.backbone and "--frozen-convs" not in given:
        backbone["model.frozen_convs"] = DEFAULT_FROZEN_CONVS[chosen]


def cuda_available() -> bool:
    """Whether this machine has CUDA (a function so that tests can choose)."""
    import torch

    return torch.cuda.is_available()


def default_preset(data: str | None, device: Any) -> str:
    """The preset for a command line without --config, by data set and device.

    The synthetic set has its own CPU preset. Other data gets the paper's preset when it will run
    on CUDA and the CPU preset otherwise; one line on stderr says which and how to pick the other.
    """
    if data in (None, "synth"):
        return SYNTH_PRESET
    device = _plain(device)
    on_cuda = device == "cuda" or (device in (None, "auto") and cuda_available())
    chosen, other = (GPU_PRESET, CPU_PRESET) if on_cuda else (CPU_PRESET, GPU_PRESET)
    from ohemcli.progress import err_console

    where = "CUDA" if on_cuda else "no CUDA"
    err_console.print(
        f"{where}: using preset {chosen}; pass --config {other} for the "
        f"{'CPU' if on_cuda else 'paper GPU'} setting",
        highlight=False,
        soft_wrap=True,
    )
    return chosen


def config_text(config: str | None, params: Mapping[str, Any]) -> tuple[str, str]:
    """The YAML text named by ``--config`` (or the default preset) and the name errors give it."""
    if config is None:
        config = default_preset(params.get("data"), params.get("device"))
    elif Path(config).suffix in (".yaml", ".yml") or Path(config).exists():
        return read_text(config, "config file"), config
    return preset_text(config), f"preset {config}"


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Data root, .mat proposals and weights as absolute paths, so a run folder works anywhere."""

    def absolute(p: str) -> str:
        return os.path.abspath(os.path.expanduser(p))

    d, m = cfg.data, cfg.model
    # COCO json files come as "a.json,b.json": each one made absolute
    root = d.root if d.root == "synth" else ",".join(absolute(p) for p in d.root.split(","))
    named = ("selective_search", "release")  # sources, not paths
    proposals = d.proposals if d.proposals in named else absolute(d.proposals)
    weights = None if m.weights is None else absolute(m.weights)
    images = None if d.images is None else absolute(d.images)
    return replace(
        cfg,
        data=replace(d, root=root, proposals=proposals, images=images),
        model=replace(m, weights=weights),
    )


def _check_sampler_name(name: Any, where: str) -> None:
    """A built-in sampler's name or a plugin's (an import path or an entry point)."""
    if not isinstance(name, str) or name not in SAMPLERS and not is_plugin_name(name):
        raise UserError(
            f"{where}: sampler.name = {quote(name)} is not allowed; "
            f"expected one of {', '.join(SAMPLERS)} or a plugin (pkg.module:Class)"
        )


def build_config(config: str | None, params: Mapping[str, Any]) -> ExperimentConfig:
    """The YAML (or preset) with every given option laid over it, checked and with absolute paths.

    ``params`` maps a command's parameter names to their values (``ctx.params``); those outside
    :data:`OPTION_KEYS` are ignored. A value out of range is one line naming the YAML file and
    key, or the option that set it.
    """
    text, source = config_text(config, params)
    base = parse_config(text, source)
    _check_sampler_name(base.sampler.name, source)
    given = given_overrides(params)
    if "--sampler" in given:
        _check_sampler_name(given["--sampler"]["sampler.name"], "--sampler")
    _another_backbone_means_its_weights(given, base)
    _test_protocol_and_its_limits(given)
    _another_backbone_freezes_its_own(given, base)
    overrides: dict[str, Any] = {}
    for option, keys in given.items():
        parse_config(text, option, keys, pairs=False)  # each option alone, so an error names it
        overrides.update(keys)
    cfg = parse_config(text, "command line", overrides)
    points = params.get("eval_points")
    if points is not None and points > cfg.train.iters:
        raise UserError(
            f"--eval-points: {quote(points)} is more than the {cfg.train.iters} iterations "
            "(train.iters); give at most that many"
        )
    return absolute_paths(cfg)
