"""The shapes of the synthetic data set: six object classes and seven look-alike distractors.

Each function draws one filled shape of radius ``r`` centred at ``(c, c)`` into a square uint8
mask. Distractors share a class's colour and texture but not its shape: a pentagon is a star
without points, a T is a cross without an arm, an arc is a broken ring.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Rng = np.random.Generator


def _poly(mask: np.ndarray, c: float, radii: np.ndarray, angles: np.ndarray) -> None:
    pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)


def _regular(n: int, star_inner: float = 0.0) -> Callable[[np.ndarray, float, float, Rng], None]:
    def draw(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
        k = 2 * n if star_inner else n
        angles = rng.uniform(0, 2 * np.pi) + np.arange(k) * 2 * np.pi / k
        radii = np.full(k, r)
        if star_inner:
            radii[1::2] = r * star_inner * rng.uniform(0.8, 1.2)
        _poly(mask, c, radii, angles)

    return draw


def _disc(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    cv2.circle(mask, (round(c), round(c)), round(r), 255, -1)


def _ring(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    _disc(mask, c, r, rng)
    cv2.circle(mask, (round(c), round(c)), round(r * rng.uniform(0.45, 0.7)), 0, -1)


def _triangle(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    angles = rng.uniform(0, 2 * np.pi) + np.radians([0, 120, 240] + rng.uniform(-15, 15, 3))
    _poly(mask, c, np.full(3, r), angles)


def _arms(mask: np.ndarray, c: float, r: float, rng: Rng, arms: tuple[int, ...]) -> None:
    """A plus sign (arms 0..3) or, with an arm missing, a T; rotated by a random angle."""
    half = r * rng.uniform(0.18, 0.3)
    theta = rng.uniform(0, np.pi / 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    bars = [((-half, -half), (r, half)), ((-half, -half), (half, r))]
    bars += [((-r, -half), (half, half)), ((-half, -r), (half, half))]
    for i in arms:
        (x0, y0), (x1, y1) = bars[i]
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) @ rot.T + c
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 255)


def _rectangle(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    phi = np.radians(rng.uniform(27, 45))  # angle of the half-diagonal: sets the aspect ratio
    angles = rng.uniform(-0.3, 0.3) + np.array([phi, np.pi - phi, np.pi + phi, -phi])
    _poly(mask, c, np.full(4, r), angles)


def _ellipse(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    axes = (round(r), round(r * rng.uniform(0.3, 0.6)))  # elongated, so never a disc
    cv2.ellipse(mask, (round(c), round(c)), axes, rng.uniform(0, 180), 0, 360, 255, -1)


def _crescent(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    _disc(mask, c, r, rng)
    a, d = rng.uniform(0, 2 * np.pi), r * rng.uniform(0.4, 0.7)
    cv2.circle(mask, (round(c + d * np.cos(a)), round(c + d * np.sin(a))), round(r), 0, -1)


def _arc(mask: np.ndarray, c: float, r: float, rng: Rng) -> None:
    t = max(2, round(r * rng.uniform(0.25, 0.4)))
    start, span = rng.uniform(0, 360), rng.uniform(80, 200)
    rr = max(1, round(r - t / 2))
    cv2.ellipse(mask, (round(c), round(c)), (rr, rr), 0, start, start + span, 255, t)


CLASS_SHAPES: dict[str, Callable[[np.ndarray, float, float, Rng], None]] = {
    "disc": _disc,
    "ring": _ring,
    "triangle": _triangle,
    "cross": lambda m, c, r, g: _arms(m, c, r, g, (0, 1, 2, 3)),
    "striped_box": _rectangle,
    "star": _regular(5, star_inner=0.45),
}
DISTRACTOR_SHAPES: dict[str, Callable[[np.ndarray, float, float, Rng], None]] = {
    "ellipse": _ellipse,
    "hexagon": _regular(6),
    "pentagon": _regular(5),
    "crescent": _crescent,
    "l_shape": lambda m, c, r, g: _arms(m, c, r, g, (0, 1)),
    "t_shape": lambda m, c, r, g: _arms(m, c, r, g, (0, 1, 2)),
    "arc": _arc,
}
