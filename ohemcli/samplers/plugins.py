"""The user's own samplers: an import path (``pkg.module:Class``) or an entry point.

A plugin is a class (or any callable) that follows :class:`~ohemcli.samplers.base.RoISampler`;
it is called with no argument, or with the run's :class:`~ohemcli.config.SamplerConfig` when it
takes one. Installed packages register names in the entry-point group ``ohemcli.samplers``
(``[project.entry-points."ohemcli.samplers"] mysampler = "mypkg.mymodule:MySampler"``), as pytest
plugins do.

Everything a plugin gets wrong reads as one line naming it and the failing call: it cannot be
imported or does not follow the protocol (:class:`~ohemcli.errors.UserError`, before any work),
or it raises while training (:class:`PluginError`, which fails that run only).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import inspect
import io
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import (
    ImageRoIs,
    MinedNegatives,
    MiningRequest,
    ProtocolError,
    SamplerBase,
    Selection,
    as_selection,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ohemcli.samplers"
# select() may answer more positions than its budget (sampling-free and focal take every RoI);
# past this many times the budget a run costs that much more, and the user hears it once.
OVER_BUDGET_FACTOR = 4
REQUIRED = ("select",)  # the rest of the protocol has defaults (no state, no mining)


class PluginError(RuntimeError):
    """A plugin sampler raised, or answered outside the protocol, while training."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin comes from: recorded in the run folder (``plugin.json``)."""

    name: str  # as given: an import path or an entry-point name
    import_path: str  # pkg.module:Class
    distribution: str | None  # the installed package that provides it (None: a loose module)
    version: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return dict(self.__dict__)


def _entry_point(name: str) -> metadata.EntryPoint | None:
    matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    return matches[0] if matches else None


def _distribution(module: str) -> tuple[str | None, str | None]:
    """The installed package that provides ``module``'s top-level package, and its version."""
    names = metadata.packages_distributions().get(module.split(".")[0], [])
    if not names:
        return None, None
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:
        return names[0], None


_SHADOW_CHECKED: set[str] = set()  # built-in names already looked up (a scan costs milliseconds)


def warn_shadowed(name: str) -> None:
    """Warn once per process when an installed entry point has a built-in sampler's ``name``:
    the built-in runs, and the plugin would otherwise be ignored without a word."""
    if name in _SHADOW_CHECKED:
        return
    _SHADOW_CHECKED.add(name)
    ep = _entry_point(name)
    if ep is None:
        return
    log.warning(
        "sampler '%s' is a built-in; the entry point of the same name (%s) is ignored. Give it "
        "as %s to run it",
        name,
        ep.value,
        ep.value,
    )


def is_plugin_name(name: str) -> bool:
    """True for an import path (``pkg.module:Class``) or a registered entry-point name."""
    return ":" in name or _entry_point(name) is not None


def locate(name: str) -> tuple[Any, PluginInfo]:
    """The plugin's class and where it came from; one-line :class:`UserError` when it cannot be
    imported."""
    ep = _entry_point(name) if ":" not in name else None
    path = ep.value if ep is not None else name
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UserError(f"--samplers: plugin '{name}': give it as pkg.module:Class")
    try:
        module = importlib.import_module(module_name)
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, in one line
        raise UserError(
            f"--samplers: plugin '{name}': cannot import {path} ({type(exc).__name__}: {exc})"
        ) from None
    dist: str | None
    version: str | None
    if ep is not None and ep.dist is not None:
        dist, version = ep.dist.name, ep.dist.version
    else:
        dist, version = _distribution(module_name)
    return target, PluginInfo(name, path, dist, version)


def _construct(target: Any, cfg: SamplerConfig, name: str) -> Any:
    try:
        params = inspect.signature(target).parameters
        required = [
            p
            for p in params.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return target(cfg) if required else target()
    except Exception as exc:  # noqa: BLE001 - the constructor is the plugin's
        raise UserError(
            f"--samplers: plugin '{name}': constructing it raised {type(exc).__name__}: {exc}"
        ) from None


def check_protocol(sampler: Any, name: str) -> None:
    """One-line :class:`UserError` when ``sampler`` lacks what the trainer calls."""
    for method in REQUIRED:
        if not callable(getattr(sampler, method, None)):
            raise UserError(f"--samplers: plugin '{name}' has no {method}() method")
    for flag in ("needs_roi_losses", "needs_mining"):
        if not isinstance(getattr(sampler, flag, False), bool):
            raise UserError(f"--samplers: plugin '{name}': {flag} must be True or False")
    if getattr(sampler, "needs_mining", False):
        for method in ("mining_request", "after_mining"):
            if not callable(getattr(sampler, method, None)):
                raise UserError(
                    f"--samplers: plugin '{name}' sets needs_mining but has no {method}() method"
                )


class PluginSampler:
    """A plugin behind the protocol: every call that raises becomes one :class:`PluginError`
    line naming the plugin and the call; missing optional methods get the defaults."""

    def __init__(self, inner: Any, info: PluginInfo) -> None:
        self.inner, self.info = inner, info
        self._warned_budget = False
        self.needs_roi_losses = bool(getattr(inner, "needs_roi_losses", False))
        self.needs_mining = bool(getattr(inner, "needs_mining", False))
        # A plugin need not start from SamplerBase: what it leaves out gets SamplerBase's value.
        self.needs_pred_boxes = bool(getattr(inner, "needs_pred_boxes", False))
        self.loss_options = getattr(inner, "loss_options", None) or SamplerBase.loss_options

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, method)(*args)
        # SystemExit too: a plugin's sys.exit() would otherwise end a whole in-process compare,
        # quietly and with exit 0, instead of failing its own run.
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's failure, in one line
            raise PluginError(
                f"sampler plugin '{self.info.name}': {method}() raised {type(exc).__name__}: {exc}"
            ) from None

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Selection:
        """The plugin's choice, checked against the protocol."""
        answer = self._call("select", rois, roi_losses, num, gen)
        try:
            selection = as_selection(answer, len(rois.labels))
        except ProtocolError as exc:
            raise PluginError(f"sampler plugin '{self.info.name}': {exc}") from None
        self._check_budget(len(selection.indices), max(num, 1))
        return selection

    def _check_budget(self, chosen: int, num: int) -> None:
        """Warn once when the plugin trains on far more RoIs than its budget: the step's cost
        grows with them, and nothing else would say why the run is slow."""
        if self._warned_budget or chosen <= OVER_BUDGET_FACTOR * num:
            return
        self._warned_budget = True
        log.warning(
            "sampler plugin '%s': select() returned %d RoIs for a budget of %d (%.0fx); "
            "each step costs about that much more",
            self.info.name,
            chosen,
            num,
            chosen / num,
        )

    def after_mining(self, mined: MinedNegatives | None) -> None:
        """Forwarded when the plugin has it."""
        if hasattr(self.inner, "after_mining"):
            self._call("after_mining", mined)

    def mining_request(self) -> MiningRequest:
        """Forwarded (only called when the plugin sets ``needs_mining``)."""
        return self._call("mining_request")

    @property
    def pool_size(self) -> int:
        """The plugin's, or 0."""
        return int(getattr(self.inner, "pool_size", 0))

    def state_dict(self) -> dict[str, Any]:
        """The plugin's state (saved in the checkpoint), or nothing."""
        if not hasattr(self.inner, "state_dict"):
            return {}
        state = self._call("state_dict")
        if not isinstance(state, dict):
            raise PluginError(f"sampler plugin '{self.info.name}': state_dict() must return a dict")
        self._check_loadable(state)
        return state

    def _check_loadable(self, state: dict[str, Any]) -> None:
        """Refuse a state that the checkpoint could not hold or that a safe load (resume,
        evaluation) would refuse: a lambda, a lock, a class. Found at the save, naming the
        plugin, rather than as a bare error or a run that cannot be read back."""
        buffer = io.BytesIO()
        try:
            torch.save(state, buffer)
            buffer.seek(0)
            torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises, in one line
            first = (str(exc).splitlines() or [""])[0][:200]
            raise PluginError(
                f"sampler plugin '{self.info.name}': state_dict() must hold only tensors and plain "
                f"values; it does not save and load back ({type(exc).__name__}: {first})"
            ) from None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (resume)."""
        if hasattr(self.inner, "load_state_dict"):
            self._call("load_state_dict", state)


def build_plugin(cfg: SamplerConfig) -> PluginSampler:
    """The plugin named by ``cfg.name``, imported, constructed and checked."""
    target, info = locate(cfg.name)
    sampler = _construct(target, cfg, cfg.name)
    check_protocol(sampler, cfg.name)
    return PluginSampler(sampler, info)
