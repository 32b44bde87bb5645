"""Every pair of samplers: the paired mean Δ mAP over seeds, a 95% interval and a verdict.

The interval is a paired bootstrap over test images and seeds when every run of the pair kept its
matches (``eval/matches.npz``): each resample draws the test images with replacement (the same
draw for every run, so the two samplers are scored on the same resampled test set) and the
paired seeds with replacement, and rescores both samplers' mAP from their saved matches
(``evaluation.matches.weighted_map``: no re-matching). Its 2.5th and 97.5th percentiles are the
interval. Without matches (a run scored by COCO AP only) or with ``--bootstrap 0`` the interval
is the paired t-interval over seeds, which ignores the finite test set. The verdict is "better"
or "worse" only when the interval excludes 0, and "runs not settled" whenever a run of the pair
is noise (``report.settled``): then ``interval_verdict`` keeps what the interval alone says and
``unsettled_runs`` names the runs at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ohemcli.errors import UserError, quote
from ohemcli.evaluation.matches import Matches, run_matches, weighted_map
from ohemcli.report.settled import NOT_SETTLED, Flag, pair_flags, stability_of
from ohemcli.runs.records import Run
from ohemcli.runs.stability import RunStability

SAMPLER_ORDER = (
    "fixed", "hnm", "ohem", "ohem-mmdet", "libra", "pisa", "sampling-free", "focal",
)  # fmt: skip
CLASSIC = ("fixed", "hnm", "ohem")  # the paper's three: every pair of them, ohem − hnm first
PAIR_COLUMNS = [
    "a", "b", "delta", "ci_low", "ci_high", "seeds", "verdict", "method", "interval_verdict",
    "unsettled_runs",
]  # fmt: skip
BOOTSTRAP_SEED = 0  # fixed: re-rendering a report gives the same interval
CONFIDENCE = 0.95


def sampler_rank(name: str) -> tuple[int, str]:
    """The built-in samplers first (fixed, hnm, ohem, then the later ones), then others by name."""
    return (SAMPLER_ORDER.index(name) if name in SAMPLER_ORDER else len(SAMPLER_ORDER), name)


def sampler_pairs(
    samplers: Sequence[str], baseline: str = "fixed", all_pairs: bool = False
) -> list[tuple[str, str]]:
    """The pairs (a, b) to report, read as a − b.

    Up to three samplers, or with ``all_pairs``, every pair: ohem − hnm, ohem − fixed,
    hnm − fixed, then the others. With more than three, each sampler against ``baseline``, plus
    ohem − hnm first (the paper's question); a baseline that is not among them is one line.
    """
    ranked = sorted(set(samplers), key=sampler_rank)
    if len(ranked) > 3 and not all_pairs:
        if baseline not in ranked:
            raise UserError(
                f"--baseline: {baseline} is not among the samplers ({', '.join(ranked)})"
            )
        pairs = [("ohem", "hnm")] if {"ohem", "hnm"} <= set(ranked) else []
        return pairs + [(s, baseline) for s in ranked if s != baseline]
    known = [s for s in ranked if s in CLASSIC][::-1]
    other = [s for s in ranked if s not in CLASSIC]
    pairs = [(a, b) for i, a in enumerate(known) for b in known[i + 1 :]]
    pairs += [(a, b) for i, a in enumerate(other) for b in other[i + 1 :] + known]
    return pairs


def verdict(ci_low: float, ci_high: float, seeds: int) -> str:
    """ "better"/"worse" only when the interval excludes 0; one seed says what it leaves out."""
    if seeds == 0:
        return "no common seed"
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "1 seed: cannot tell Δ from seed noise" if seeds == 1 else "no interval"
    word = "better" if ci_low > 0 else "worse" if ci_high < 0 else "no clear difference"
    # With one seed the interval covers the test set but not seed-to-seed variation.
    return f"{word} (1 seed: test set only)" if seeds == 1 else word


def t_interval(deltas: np.ndarray) -> tuple[float, float]:
    """The paired t-interval (95%) of the mean of ``deltas``; NaN with fewer than 2."""
    if len(deltas) < 2:
        return math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + CONFIDENCE / 2, len(deltas) - 1)) * float(deltas.std(ddof=1))
    half /= math.sqrt(len(deltas))
    mean = float(deltas.mean())
    return mean - half, mean + half


MAX_BOOTSTRAP = 100_000  # resamples; a percentile interval is stable long before this
DRAW_CHUNK = 1000  # resamples drawn at once: memory is (DRAW_CHUNK, images), whatever --bootstrap


def check_bootstrap(resamples: int, option: str = "--bootstrap") -> int:
    """``resamples`` when it is in [0, MAX_BOOTSTRAP]; otherwise one line naming ``option``."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)):
        raise UserError(f"{option} {quote(resamples)}: must be a whole number")
    if not 0 <= resamples <= MAX_BOOTSTRAP:
        raise UserError(
            f"{option} {resamples}: must be in [0, {MAX_BOOTSTRAP}] (0: t over seeds); a 95% "
            "interval does not move beyond a few thousand resamples"
        )
    return int(resamples)


@dataclass
class Resampler:
    """One bootstrap of the test images shared by every run, with each run's resampled mAP.

    The (resamples, images) multiplicities are drawn in chunks of ``DRAW_CHUNK`` rows, each
    chunk from its own generator seeded by (``seed``, chunk), so every run is scored on the
    same draw and memory stays bounded however many resamples are asked for.
    """

    resamples: int
    seed: int = BOOTSTRAP_SEED
    image_ids: tuple[str, ...] | None = None  # the test images of the first run scored
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # run folder -> (B,) mAP

    def weights(self, chunk: int, n: int) -> np.ndarray:
        """Rows ``chunk * DRAW_CHUNK`` onwards of the multiplicities of ``n`` images."""
        rows = min(DRAW_CHUNK, self.resamples - chunk * DRAW_CHUNK)
        draws = np.random.default_rng([self.seed, chunk]).integers(0, n, (rows, n))
        offsets = np.arange(rows)[:, None] * n
        return np.bincount((draws + offsets).ravel(), minlength=rows * n).reshape(rows, n)

    def run_maps(self, run: Run, matches: Matches, metric: str) -> np.ndarray | None:
        """The run's mAP on every resample (None when its test images differ from the others')."""
        if self.image_ids is None:
            self.image_ids = matches.image_ids
        if matches.image_ids != self.image_ids:
            return None
        key = str(run.paths.root)
        if key not in self.maps:
            n = len(matches.image_ids)
            chunks = range(-(-self.resamples // DRAW_CHUNK))
            # metric: one of VOC_RULE's values, a str here
            parts = [weighted_map(matches, self.weights(c, n), metric) for c in chunks]  # type: ignore[arg-type]
            self.maps[key] = np.concatenate(parts) if parts else np.zeros(0)
        return self.maps[key]


def _bootstrap_pair(
    a_maps: list[np.ndarray], b_maps: list[np.ndarray], rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of mean_s (a_s − b_s) over resampled images (columns) and seeds."""
    diffs = np.stack([x - y for x, y in zip(a_maps, b_maps, strict=True)])  # (seeds, B)
    seeds, resamples = diffs.shape
    pick = rng.integers(0, seeds, (resamples, seeds))  # seeds drawn with replacement
    boot = diffs[pick, np.arange(resamples)[:, None]].mean(axis=1)
    lo, hi = np.percentile(boot, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(lo), float(hi)


def pair_table(
    runs: Sequence[Run],
    bootstrap: int = 1000,
    stability: Mapping[str, RunStability] | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> pd.DataFrame:
    """One row per sampler pair (``PAIR_COLUMNS``), paired by seed; see the module docstring.

    ``stability``: every run's, by ``settled.run_key`` (assessed here when not given); which
    pairs: :func:`sampler_pairs`.
    """
    return pair_rows(runs, bootstrap, stability, baseline, all_pairs)[0]


def pair_rows(
    runs: Sequence[Run],
    bootstrap: int = 1000,
    stability: Mapping[str, RunStability] | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> tuple[pd.DataFrame, list[Flag]]:
    """:func:`pair_table` and every flag that kept a pair from its verdict."""
    stability = stability_of(runs) if stability is None else stability
    by_key = {(r.sampler, r.seed): r for r in runs}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampler = Resampler(check_bootstrap(bootstrap))
    matches: dict[str, Matches | None] = {}
    rows, flags = [], []
    for a, b in sampler_pairs([r.sampler for r in runs], baseline, all_pairs):
        seeds = sorted(s for (name, s) in by_key if name == a and (b, s) in by_key)
        pairs = [(by_key[(a, s)], by_key[(b, s)]) for s in seeds]
        deltas = np.array([float(x.summary["mAP"]) - float(y.summary["mAP"]) for x, y in pairs])
        lo, hi, method = math.nan, math.nan, "t over seeds"
        if bootstrap > 0 and pairs:
            found = _pair_maps(pairs, resampler, matches)
            if found is not None:
                lo, hi = _bootstrap_pair(*found, rng)
                method = f"bootstrap: {bootstrap} resamples of test images and seeds"
            else:
                method = "t over seeds (no matches.npz for every run, or other test images)"
        if method.startswith("t over seeds"):
            lo, hi = t_interval(deltas)
        delta = float(deltas.mean()) if len(deltas) else math.nan
        called = verdict(lo, hi, len(seeds))
        found_flags = pair_flags(pairs, stability, delta, called, f"{a} − {b}")
        flags += found_flags
        names = ", ".join(dict.fromkeys(f.run.name for f in found_flags))
        shown = NOT_SETTLED if found_flags else called
        rows.append([a, b, delta, lo, hi, len(seeds), shown, method, called, names])
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), flags


def _pair_maps(
    pairs: list[tuple[Run, Run]], resampler: Resampler, cache: dict[str, Matches | None]
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Both samplers' resampled mAP per paired seed, or None when some run cannot be resampled."""
    out: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for pair in pairs:
        for side, run in enumerate(pair):
            # "all" puts voc07 at the top level; COCO AP cannot be rescored from VOC matches.
            metric = {"voc07": "voc07", "all": "voc07", "voc10": "voc10"}.get(
                str(run.summary.get("metric", "voc07"))
            )
            if metric is None:
                return None
            key = str(run.paths.root)
            if key not in cache:
                cache[key] = run_matches(run)
            m = cache[key]
            maps = resampler.run_maps(run, m, metric) if m is not None else None
            if maps is None:
                return None
            out[side].append(maps)
    return out
