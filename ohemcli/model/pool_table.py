"""RoI max pooling of many RoIs at once, without autograd: bit for bit torchvision's
``roi_pool``, for the CPU read-only pass.

OHEM's read-only pass pools every RoI of the batch (about 400 on synth_tiny against the 128 that
train). torchvision's CPU kernel visits each bin's cells once per channel, channel-planar
(NCHW). Here the feature map is laid out channels-last and a 2D sparse table of maxima is built
over it (level (i, j) holds the max of the 2^i x 2^j cells from each cell); each bin is then the
max of four overlapping table rows, one C-vector each, gathered and reduced by ATen's parallel
kernels. Max is exact, so the values equal torchvision's bit for bit.

The bins follow torchvision's CPU kernel (``csrc/ops/cpu/roi_pool_kernel.cpp``) step by step in
float32: ``round`` half away from zero of the scaled corners, ``roi_w = max(x2 - x1 + 1, 1)``,
``bin = roi_w / S``, ``[floor(p * bin), ceil((p + 1) * bin))`` shifted by the corner and clipped
to the map, and 0 for an empty bin. Features must be finite (a NaN would win the max here and
lose every comparison in torchvision's scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Most floats that one gather holds (4 table rows per bin): 32 MiB, so that VGG16's 512 channels
# over 2,000 RoIs go in parts, while synth_tiny's ~400 RoIs of 64 channels go in one.
_GATHER_FLOATS = 1 << 23


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round`` (ties away from zero); ``torch.round`` rounds ties to even."""
    whole = torch.trunc(x)
    return torch.where((x - whole).abs() == 0.5, whole + torch.sign(x), torch.round(x))


def _floor_log2(n: Tensor) -> Tensor:
    """floor(log2(n)) of positive integers, exactly (no float log)."""
    k, m = torch.zeros_like(n), n.clone()
    while bool((m > 1).any()):
        k += (m > 1).long()
        m = m // 2
    return k


@dataclass
class Bins:
    """Each RoI's bins, as torchvision's CPU kernel cuts them: starts (R, S) and lengths (R, S)
    in cells, rows (h) and columns (w) apart; a length <= 0 is an empty bin."""

    h0: Tensor
    hlen: Tensor
    w0: Tensor
    wlen: Tensor


def roi_bins(rois: Tensor, size: int, scale: float, height: int, width: int) -> Bins:
    """The bins of ``rois`` (R, 5) on a ``height`` x ``width`` map (see module docstring)."""
    corners = _round_half_away(rois[:, 1:].float() * torch.tensor(scale, dtype=torch.float32))
    q = corners.long()
    roi_w = (q[:, 2] - q[:, 0] + 1).clamp(min=1)
    roi_h = (q[:, 3] - q[:, 1] + 1).clamp(min=1)
    p = torch.arange(size, dtype=torch.float32, device=rois.device)
    bin_h = (roi_h.float() / float(size))[:, None]
    bin_w = (roi_w.float() / float(size))[:, None]
    h0 = (torch.floor(p * bin_h).long() + q[:, 1:2]).clamp(0, height)
    h1 = (torch.ceil((p + 1) * bin_h).long() + q[:, 1:2]).clamp(0, height)
    w0 = (torch.floor(p * bin_w).long() + q[:, 0:1]).clamp(0, width)
    w1 = (torch.ceil((p + 1) * bin_w).long() + q[:, 0:1]).clamp(0, width)
    return Bins(h0, h1 - h0, w0, w1 - w0)


def _shifted_max(prev: Tensor, cur: Tensor, dim: int, half: int) -> None:
    """``cur[x] = max(prev[x], prev[x + half])`` along ``dim``; the last ``half`` entries, which
    no query reads whole, copy ``prev``."""
    n = prev.shape[dim]
    keep = max(n - half, 0)
    cur.narrow(dim, keep, n - keep).copy_(prev.narrow(dim, keep, n - keep))
    if keep:
        torch.maximum(
            prev.narrow(dim, 0, keep), prev.narrow(dim, half, keep), out=cur.narrow(dim, 0, keep)
        )


class PoolTable:
    """The sparse table of one feature map (N, C, H, W) for the bins of ``rois`` (R, 5)."""

    def __init__(self, features: Tensor, rois: Tensor, size: int, scale: float) -> None:
        n, c, h, w = features.shape
        self.shape, self.size, self.rois = (n, c, h, w), size, rois
        self.bins = roi_bins(rois, size, scale, h, w)
        self.kh = _floor_log2(self.bins.hlen.clamp(min=1))
        self.kw = _floor_log2(self.bins.wlen.clamp(min=1))
        has_rois = len(rois) > 0
        self.levels = (int(self.kh.max()) + 1, int(self.kw.max()) + 1) if has_rois else (1, 1)
        lh, lw = self.levels
        # One table of C-vectors; the extra last row is zero: the value of an empty bin.
        self.table = features.new_empty(lh * lw * n * h * w + 1, c, dtype=torch.float32)
        self.table[-1] = 0
        levels = self.table[:-1].view(lh, lw, n, h, w, c)
        levels[0, 0].copy_(features.detach().float().permute(0, 2, 3, 1))
        for j in range(1, lw):  # wider: along w (dim 2 of a level)
            _shifted_max(levels[0, j - 1], levels[0, j], 2, 1 << (j - 1))
        for i in range(1, lh):  # taller: along h (dim 2 of a row of levels), every width at once
            _shifted_max(levels[i - 1], levels[i], 2, 1 << (i - 1))

    def _rows(self, positions: Tensor | None) -> Tensor:
        """The four table rows of each bin of the RoIs at ``positions`` (all: None), (4, B*S*S)."""
        n, _, h, w = self.shape
        b = self.bins
        pick = (lambda t: t) if positions is None else (lambda t: t[positions])
        h0, hlen, w0, wlen = pick(b.h0), pick(b.hlen), pick(b.w0), pick(b.wlen)
        kh, kw = pick(self.kh), pick(self.kw)
        image = pick(self.rois[:, 0]).long()[:, None, None]
        top = h0.clamp(max=h - 1)[:, :, None]
        bottom = (h0 + hlen - (1 << kh)).clamp(0, h - 1)[:, :, None]
        left = w0.clamp(max=w - 1)[:, None, :]
        right = (w0 + wlen - (1 << kw)).clamp(0, w - 1)[:, None, :]
        base = ((kh[:, :, None] * self.levels[1] + kw[:, None, :]) * n + image) * h
        rows = torch.stack(
            [
                (base + top) * w + left,
                (base + top) * w + right,
                (base + bottom) * w + left,
                (base + bottom) * w + right,
            ]
        )
        empty = (hlen[:, :, None] <= 0) | (wlen[:, None, :] <= 0)
        return torch.where(empty, len(self.table) - 1, rows).view(4, -1)

    def values(self, positions: Tensor | None = None) -> Tensor:
        """Pooled RoIs (R, C, S, S) float32: every RoI, or those at ``positions``."""
        rows = self._rows(positions)
        c, s = self.shape[1], self.size
        out = torch.empty(rows.shape[1], c, dtype=torch.float32, device=self.table.device)
        step = max(1, _GATHER_FLOATS // (4 * c))
        for start in range(0, rows.shape[1], step):
            part = rows[:, start : start + step]
            got = self.table.index_select(0, part.reshape(-1)).view(4, -1, c)
            torch.maximum(got[2], got[3], out=got[2])
            torch.maximum(got[0], got[1], out=got[0])
            torch.maximum(got[0], got[2], out=out[start : start + part.shape[1]])
        count = out.shape[0] // (s * s)
        return out.view(count, s * s, c).transpose(1, 2).contiguous().view(count, c, s, s)
