"""What a real line does to a photo, applied to a decoded grey frame: uneven light, the part
anywhere in the frame, zoom, defocus, sensor noise, JPEG, a lower resolution, dust.

`inspector evaluate --nuisance NAME` applies one to every test image (the generator fixed by a
seed and the file name); training applies random ones to copies of the good images, so the
model learns that these changes are not defects. Their names, and which of them move the part,
are in `inspector.nuisance_names` (read by settings without loading OpenCV).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
from .cv_setup import cv2

Frame = np.ndarray  # float32 grey in [0, 1]


def _grid(shape):
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs / (w - 1), ys / (h - 1)


def light_radial(frame: Frame, rng: np.random.Generator) -> Frame:
    """Light falling off towards the corners (vignetting): corners at 55-75% of the centre."""
    x, y = _grid(frame.shape)
    cx, cy = rng.uniform(0.4, 0.6, 2)
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / 0.5
    corner = rng.uniform(0.55, 0.75)
    return np.clip(frame * (1 - (1 - corner) * r2), 0, 1)


def light_gradient(frame: Frame, rng: np.random.Generator) -> Frame:
    """Light from one side: brightness falls linearly to 60-80% across the frame."""
    x, y = _grid(frame.shape)
    angle = rng.uniform(0, 2 * np.pi)
    t = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    low = rng.uniform(0.6, 0.8)
    return np.clip(frame * (low + (1 - low) * (1 - t)), 0, 1)


def light_spot(frame: Frame, rng: np.random.Generator) -> Frame:
    """A brighter spot (a lamp's hot spot): +20-40% in a soft disc a fifth of the frame wide."""
    x, y = _grid(frame.shape)
    cx, cy = rng.uniform(0.25, 0.75, 2)
    sigma = rng.uniform(0.12, 0.25)
    gain = 1 + rng.uniform(0.2, 0.4) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    return np.clip(frame * gain, 0, 1)


def position(frame: Frame, rng: np.random.Generator) -> Frame:
    """The part anywhere in the frame at any angle, whole part still in view (3% margin)."""
    h, w = frame.shape
    ys, xs = np.nonzero(_part_mask(frame))
    if not len(xs):
        return frame
    points = np.stack([xs, ys], 1).astype(np.float32)
    centre = points.mean(0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(rng.uniform(0, 360)), 1.0)
    moved = points @ m[:, :2].T + m[:, 2]
    margin = 0.03 * np.array([w, h])
    low = margin - moved.min(0)  # shifts that keep every part pixel inside
    high = np.array([w, h]) - margin - moved.max(0)
    shift = np.where(low <= high, rng.uniform(np.minimum(low, high), np.maximum(low, high)), (low + high) / 2)
    m[:, 2] += shift
    return _warp(frame, m, rng)


def zoom(frame: Frame, rng: np.random.Generator) -> Frame:
    """The camera a little nearer or farther: scale by 0.92-1.08 about the centre."""
    h, w = frame.shape
    s = rng.choice([-1, 1]) * rng.uniform(0.04, 0.08) + 1
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, s)
    return _warp(frame, m, rng)


def _warp(frame: Frame, m: np.ndarray, rng: np.random.Generator) -> Frame:
    """Move the frame; what comes into view is more background (its level and grain), not a
    mirror image that could hold half a second part."""
    h, w = frame.shape
    background = frame[~_part_mask(frame)]
    level, grain = float(np.median(background)), float(np.std(background))
    moved = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    inside = cv2.warpAffine(np.ones_like(frame), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    fill = level + rng.normal(0, min(grain, 0.03), frame.shape).astype(np.float32)
    return np.clip(moved + (1 - inside) * fill, 0, 1).astype(np.float32)


def defocus(frame: Frame, rng: np.random.Generator) -> Frame:
    """The lens slightly out of focus: a blur circle 2-4 px across on a 1024 px frame (a
    Gaussian of half its radius, which also behaves for the sub-pixel circles of small frames)."""
    radius = rng.uniform(1.0, 2.0) * max(frame.shape) / 1024
    return cv2.GaussianBlur(frame, (0, 0), radius / 2, borderType=cv2.BORDER_REFLECT_101)


def noise(frame: Frame, rng: np.random.Generator) -> Frame:
    """Sensor noise: Gaussian, 2-4 grey levels of 255."""
    sigma = rng.uniform(2, 4) / 255
    return np.clip(frame + rng.normal(0, sigma, frame.shape).astype(np.float32), 0, 1)


def jpeg(frame: Frame, rng: np.random.Generator) -> Frame:
    """Stored as JPEG at quality 80-90 by the camera PC."""
    quality = int(rng.integers(80, 91))
    ok, data = cv2.imencode(".jpg", (frame * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255


def resolution(frame: Frame, rng: np.random.Generator) -> Frame:
    """Another camera with a lower resolution: 512 pixels on the longer side, the aspect kept."""
    h, w = frame.shape
    scale = 512 / max(h, w)
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def dust(frame: Frame, rng: np.random.Generator) -> Frame:
    """Dust specks on the background: 5-20 dark dots 2-6 px across on a 1024 px frame, clear of
    the part (a speck on the part itself is a blemish QA should see)."""
    out = frame.copy()
    h, w = frame.shape
    scale = max(h, w) / 1024
    clear = max(3, int(0.03 * max(h, w))) | 1
    part = cv2.dilate(_part_mask(frame).astype(np.uint8), np.ones((clear, clear), np.uint8)) > 0
    free = np.argwhere(~part)
    if not len(free):
        return out
    for _ in range(int(rng.integers(5, 21))):
        y, x = free[int(rng.integers(len(free)))]
        level = float(np.median(frame)) * rng.uniform(0.2, 0.6)
        cv2.circle(out, (int(x), int(y)), max(1, int(round(rng.uniform(1, 3) * scale))), level, -1)
    return out


NUISANCES: dict[str, Callable[[Frame, np.random.Generator], Frame]] = {
    "light-radial": light_radial,
    "light-gradient": light_gradient,
    "light-spot": light_spot,
    "position": position,
    "zoom": zoom,
    "defocus": defocus,
    "noise": noise,
    "jpeg": jpeg,
    "resolution": resolution,
    "dust": dust,
}


def augment(frame: Frame, rng: np.random.Generator, names: tuple[str, ...] = ()) -> Frame:
    """One or two nuisances picked at random from `names` (every one when empty), as training sees them."""
    pool = list(names) or list(NUISANCES)
    names = rng.choice(pool, size=min(int(rng.integers(1, 3)), len(pool)), replace=False)
    for name in names:
        frame = NUISANCES[str(name)](frame, rng).astype(np.float32)
    return frame


def apply(name: str, frame: Frame, seed: int, key: str) -> Frame:
    """`name` applied to `frame` with a generator fixed by `seed` and `key` (say, the file name)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return NUISANCES[name](frame.astype(np.float32), rng).astype(np.float32)


def _part_mask(frame: Frame) -> np.ndarray:
    small = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur((small * 255).astype(np.uint8), (0, 0), 1.0)
    _, m = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    m = cv2.dilate(m, np.ones((5, 5), np.uint8))
    return cv2.resize(m, frame.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0


def _part_box(frame: Frame):
    ys, xs = np.nonzero(_part_mask(frame))
    if not len(xs):
        return None
    return np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.min(), ys.max()], [xs.max(), ys.max()]], np.float32)


def _inside(corners, m, w, h, margin=0.03):
    moved = corners @ m[:, :2].T + m[:, 2]
    return bool((moved[:, 0] > margin * w).all() and (moved[:, 0] < (1 - margin) * w).all()
                and (moved[:, 1] > margin * h).all() and (moved[:, 1] < (1 - margin) * h).all())
