"""Registering a frame to where the part lies in the good images: the `register` pose.

No shape is assumed. Every frame is shrunk to a small working copy (WORKING_SIZE pixels on the
longer side, blurred and standardised) and matched to a reference made from the training images
by normalised cross-correlation, over shifts and (when the training images turn) turns: first on
a copy half that size over the whole range, then on the working copy around the best match.

`measure` decides from the training images how much searching a frame needs:

- a fixed scene (the training images do not move, as a part on a fixture): no shift or turn;
  the whole frame is the model's input;
- the part moves: shifts up to a little more than the training images show;
- the part turns as well: turns over the range the training images show (all round when they
  turn freely).

The search is kept to what the good images show, so a part out of its place (a transistor
misplaced on its board) stays out of place in the model's input, and is judged a defect. Only
the camera's distance is searched beyond it, within the pipeline's `zoom_tolerance`: the whole
scene a few percent nearer or farther is the same scene. The zoom is searched about the centre,
at the best shift and turn; in a fixed scene at no shift.

With `flatten_light` a part that moves about the frame is matched on flattened working copies
(`flat`: the logarithm of the copy less its broad blur, so that light falling across the frame
does not pull the match away from the part; a scene that stands still registers as well without,
and held-out transistors scored a little lower with), and the registration keeps the good
images' light: the mean of their copies shrunk to the working size, their intensities as
photographed, registered (`light`). A
frame's input is divided by a smooth field (a second-degree surface in the logarithm of its
ratio to that light, fitted on coarse cells, the quarter that fit worst left out, and cells
where the good images are nearly black not used), so light falling off towards the corners or
from one side evens out. A surface of that degree cannot follow a hot spot a fifth of the frame
wide: with `local_light` (training sets it for a part that moves about the frame, as `flat`;
held-out transistors, a scene that stands still, scored a little lower with it) what the surface
leaves is evened out too, as the median of its misfit over the 5x5 cells around each cell
(cells off by more than a factor of 1.6, no light's doing, left out; a hot spot brighter than
that has its centre evened by its flanks only). A defect smaller than a quarter of the frame is
left out of the surface, and one darker or brighter than that factor, or amid the frame and
covering fewer than half of those 5x5 cells, out of the local light; a larger one, or a
fainter one at the frame's edge where the edge cells fill the window several times over (2x2
cells in a corner), is partly taken for light: counting the edge cells once instead evened a
hot spot near the edge less well. What the camera did not see (the input's edge, when the
camera is nearer than in training or the part lies near the frame's edge) is filled with that
light (`fill_unseen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .cv_setup import cv2
from .lighting import fit_surface, surface_terms
from .settings import MAX_ZOOM_TOLERANCE

# Frames are matched on copies this many pixels on the longer side, and a half-size copy first.
WORKING_SIZE = 96
COARSE_SHRINK = 2
# A turn all round is searched in steps of this many degrees on the half-size copy, then refined.
COARSE_ANGLE_STEP = 6.0
FINE_ANGLE_STEP = 1.5
# How far the reference is searched for while it is made (a share of the longer side).
BUILD_SHIFT = 0.4
# Training images whose median correlation with their plain mean, where they lie, is at least
# this show a scene that stands still (a screw lying anywhere on a plain table: 0.57; a transistor
# on its board: 0.92); they are then searched for up to this share of the frame each way.
STILL_CORRELATION = 0.75
STILL_REACH = 0.06
# Training images whose registration moves them less than this (working pixels; degrees) are
# taken as not moving: one working pixel is a hundredth of the frame.
STILL_SHIFT = 1.0
STILL_ANGLE = 2.0
# Beyond the motion the training images show, a frame may move this much more (times, plus pixels).
SHIFT_SLACK, SHIFT_MARGIN = 1.25, 2.0
ANGLE_MARGIN = 5.0
# Training images turning more than this (degrees) turn freely: the search goes all round.
FREE_TURN = 60.0
# Zoom is searched in steps of this share, then once more around the best in steps a quarter as large.
ZOOM_STEP = 0.02
# A flattened working copy is its logarithm less a blur this share of its longer side wide
# (broad against a part's edges, narrow against the light's fall across the frame), with
# intensities floored at FLAT_DARKEST first (the logarithm of a black pixel is its noise).
FLAT_BLUR = 1 / 8
FLAT_DARKEST = 0.01
# The light is fitted on this many cells each way, as a surface (`inspector.lighting`'s, of
# SURFACE_DEGREE), on the cells that fit best (this share of them; the others may hold a defect
# or a part that moved). Cells where the good images' light is below LIGHT_DARKEST are left out (on a black ground the ratio is the
# sensor's noise); with fewer than a quarter of the cells left the light is not evened. The
# field is kept within LIGHT_LIMIT times either way.
LIGHT_CELLS = 16
LIGHT_KEEP = 0.75
LIGHT_DARKEST = 0.02
LIGHT_LIMIT = 4.0
# With `local_light` the field also follows light a few cells across, which the surface cannot (a
# hot spot): the surface's misfit, median-filtered over LIGHT_LOCAL x LIGHT_LOCAL cells so that a
# defect covering fewer than about half of them (amid the frame) is not taken for light, then smoothed.
LIGHT_LOCAL = 5
LIGHT_LOCAL_BLUR = 0.7
LIGHT_LOCAL_MOST = float(np.log(1.6))


@dataclass(frozen=True)
class Registration:
    """The reference (working copy, standardised) and the search a frame is matched over:
    shifts up to `max_shift` working pixels each way, turns up to `max_angle` degrees each way
    (180: all round), zoom up to `max_zoom` (a share) nearer or farther. No shift and no turn: a
    fixed scene (`fixed`), searched over zoom only, if at all. `light`: the good images' light
    (see the module), or None. `flat`: the working copies (the reference's too) are flattened.
    `fill`: what the camera did not see is filled with the light (bundles saved before it repeat
    the frame's edge, as their models learned). `local_light`: the light is evened out locally
    too, a hot spot included (bundles saved before it even out a smooth surface only)."""

    reference: np.ndarray
    max_shift: float = 0.0
    max_angle: float = 0.0
    max_zoom: float = 0.0
    light: np.ndarray | None = None
    flat: bool = False
    fill: bool = False
    local_light: bool = False

    @property
    def fixed(self) -> bool:
        return self.max_shift == 0 and self.max_angle == 0

    @property
    def motion(self) -> str:
        """In words, for the bundle and the training summary."""
        if self.fixed:
            return "fixed scene: the whole frame, " + (
                f"zoom up to {self.max_zoom:.0%} searched" if self.max_zoom else "not searched")
        turns = "turning all round" if self.max_angle >= 180 else (
            f"turning up to {self.max_angle:.0f} degrees" if self.max_angle else "not turning")
        share = self.max_shift / max(self.reference.shape)
        zoom = f", zoom up to {self.max_zoom:.0%} searched" if self.max_zoom else ""
        return f"moving up to {share:.0%} of the frame, {turns}{zoom}"

    def to_dict(self) -> dict[str, Any]:
        data = {"reference": np.round(self.reference, 3).tolist(), "max_shift": float(self.max_shift),
                "max_angle": float(self.max_angle), "max_zoom": float(self.max_zoom), "flat": self.flat,
                "fill": self.fill, "local_light": self.local_light, "motion": self.motion}
        if self.light is not None:
            data["light"] = np.round(self.light, 4).tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        reference = _table(data["reference"], "reference")
        light = _table(data["light"], "light") if data.get("light") is not None else None
        if light is not None and (light.shape != reference.shape or light.min() < 0 or light.max() < LIGHT_DARKEST):
            raise ValueError("registration light must be a table of intensities the reference's size, "
                             "not negative and not all black")
        zoom = float(data.get("max_zoom", 0.0))
        if not 0.0 <= zoom <= MAX_ZOOM_TOLERANCE:
            raise ValueError(f"registration max_zoom must be between 0 and {MAX_ZOOM_TOLERANCE}; got {zoom}")
        flat, fill, local = (data.get(name, False) for name in ("flat", "fill", "local_light"))
        for name, value in (("flat", flat), ("fill", fill), ("local_light", local)):
            if not isinstance(value, bool):
                raise ValueError(f"registration {name} must be true or false; got {value!r}")
            if value and name != "flat" and light is None:
                raise ValueError(f"registration {name} needs the good images' light")
        return cls(reference, float(data["max_shift"]), float(data["max_angle"]), zoom, light, flat, fill, local)


def _table(value: Any, name: str) -> np.ndarray:
    table = np.asarray(value, np.float32)
    if table.ndim != 2 or min(table.shape) < 8 or not np.isfinite(table).all():
        raise ValueError(f"registration {name} must be a 2-D table of numbers")
    return table


def working_shape(shape: tuple[int, int], size: int = WORKING_SIZE) -> tuple[int, int]:
    """(height, width) of a copy of a frame of `shape` with `size` pixels on its longer side."""
    height, width = shape
    factor = size / max(height, width)
    return max(8, round(height * factor)), max(8, round(width * factor))


def working_copy(gray: np.ndarray, shape: tuple[int, int], flat: bool = False) -> np.ndarray:
    """A frame shrunk to `shape` (height, width), blurred a little and standardised (mean 0, std 1);
    `flat`: its logarithm less a broad blur of it first (see FLAT_BLUR), which takes out the light."""
    return working_of(light_copy(gray, shape), flat)


def working_of(copy: np.ndarray, flat: bool = False) -> np.ndarray:
    """`working_copy` of a frame whose `light_copy` is `copy` (training keeps both)."""
    if flat:
        copy = np.log(np.maximum(copy, FLAT_DARKEST))
        copy = copy - cv2.GaussianBlur(copy, (0, 0), max(copy.shape) * FLAT_BLUR)
    return _standardised(cv2.GaussianBlur(copy, (0, 0), 1.0))


def light_copy(gray: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A frame shrunk to `shape` (height, width), its intensities as they are."""
    return cv2.resize(gray.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def conform(copy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working copy brought to `shape` (height, width), when its frame was of another size."""
    if copy.shape == tuple(shape):
        return copy
    return _standardised(cv2.resize(copy, (shape[1], shape[0]), interpolation=cv2.INTER_AREA))


def _rotation(shape: tuple[int, int], angle: float) -> np.ndarray:
    """2x3: a turn by `angle` degrees about the centre of an image of `shape` (height, width)."""
    return cv2.getRotationMatrix2D(((shape[1] - 1) / 2, (shape[0] - 1) / 2), angle, 1.0)


def _peak(scores: np.ndarray) -> tuple[float, float, float]:
    """The best place (x, y) on a correlation map, to a fraction of a pixel, and its score."""
    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)

    def refine(low: float, mid: float, high: float) -> float:
        bend = low - 2 * mid + high
        return 0.0 if bend >= 0 else float(np.clip(0.5 * (low - high) / bend, -0.5, 0.5))

    dx = refine(scores[y, x - 1], scores[y, x], scores[y, x + 1]) if 0 < x < scores.shape[1] - 1 else 0.0
    dy = refine(scores[y - 1, x], scores[y, x], scores[y + 1, x]) if 0 < y < scores.shape[0] - 1 else 0.0
    return x + dx, y + dy, float(scores[y, x])


def _search(work: np.ndarray, reference: np.ndarray, angles: Sequence[float], reach: int,
            start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The best of `angles` and shifts up to `reach` pixels (after `start`, a 2x3 map applied
    first): the 2x3 map from `work`'s pixels to the reference's, and its correlation."""
    best: tuple[float, np.ndarray] = (-2.0, np.eye(2, 3))
    base = np.eye(3) if start is None else np.vstack([start, [0, 0, 1]])
    for angle in angles:
        turn = np.vstack([_rotation(work.shape, angle), [0, 0, 1]]) @ base
        turned = cv2.warpAffine(work, turn[:2], (reference.shape[1], reference.shape[0]), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        padded = cv2.copyMakeBorder(turned, reach, reach, reach, reach, cv2.BORDER_CONSTANT, value=0.0)
        x, y, score = _peak(cv2.matchTemplate(padded, reference, cv2.TM_CCOEFF_NORMED))
        if score > best[0]:
            # The reference's pixel q lies on the turned copy's q + (x - reach, y - reach).
            shift = np.array([[1, 0, reach - x], [0, 1, reach - y], [0, 0, 1]])
            best = (score, (shift @ turn)[:2])
    return best[1], best[0]


def _angles(max_angle: float, step: float, centre: float = 0.0) -> list[float]:
    if max_angle <= 0:
        return [centre]
    if max_angle >= 180:
        return list(np.arange(-180.0, 180.0, step))
    count = int(np.ceil(max_angle / step))
    return [centre + step * k for k in range(-count, count + 1)]


def match(work: np.ndarray, reference: np.ndarray, max_shift: float, max_angle: float,
          max_zoom: float = 0.0) -> tuple[np.ndarray, float]:
    """The 2x3 map from a working copy's pixels to the reference's that matches them best,
    within the search, and its correlation: over the whole range on half-size copies, then
    around the best on the working copies (and there over the zooms, when `max_zoom`)."""
    if max_shift == 0 and max_angle == 0 and max_zoom == 0:
        return np.eye(2, 3), float(cv2.matchTemplate(work, reference, cv2.TM_CCOEFF_NORMED).max())
    half = (max(4, reference.shape[0] // COARSE_SHRINK), max(4, reference.shape[1] // COARSE_SHRINK))
    factor = half[1] / reference.shape[1]
    coarse, _ = _search(cv2.resize(work, (half[1], half[0]), interpolation=cv2.INTER_AREA),
                        cv2.resize(reference, (half[1], half[0]), interpolation=cv2.INTER_AREA),
                        _angles(max_angle, COARSE_ANGLE_STEP if max_angle >= 180 else FINE_ANGLE_STEP * 2),
                        int(np.ceil(max_shift * factor)))
    # The half-size map at full size: the same turn, the shift scaled.
    start = coarse.copy()
    start[:, 2] /= factor
    # A turn of the whole copy about its centre, after `start`, refines the angle.
    angles = _angles(COARSE_ANGLE_STEP if max_angle >= 180 else FINE_ANGLE_STEP * 2,
                     FINE_ANGLE_STEP) if max_angle else [0.0]
    # A fixed scene is not shifted: only zoomed about its centre.
    reach = int(np.ceil(1 / factor)) + 1 if max_shift else 0
    if not max_zoom:
        return _search(work, reference, angles, reach, start)
    if len(angles) > 1:
        # Turned first at the camera's own distance; the zoom is searched at that turn.
        start, angles = _search(work, reference, angles, reach, start)[0], [0.0]
    # Zoom about the centre after `start`: coarse steps over the whole range, then fine ones.
    best: tuple[np.ndarray, float] = (start, -2.0)
    found = 0.0
    steps = int(np.ceil(max_zoom / ZOOM_STEP))
    for zooms in (np.linspace(-max_zoom, max_zoom, 2 * steps + 1), None):
        if zooms is None:
            zooms = np.clip(found + np.array([-2, -1, 1, 2]) * ZOOM_STEP / 4, -max_zoom, max_zoom)
        for zoom in zooms:
            scaled = np.vstack([cv2.getRotationMatrix2D(((work.shape[1] - 1) / 2, (work.shape[0] - 1) / 2), 0.0,
                                                        1.0 + float(zoom)), [0, 0, 1]]) @ np.vstack([start, [0, 0, 1]])
            candidate = _search(work, reference, angles, reach, scaled[:2])
            if candidate[1] > best[1]:
                best, found = candidate, float(zoom)
    return best


def _angle_of(matrix: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(-matrix[0, 1], matrix[0, 0])))


def _motion(matrix: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """How far a map moves the working copy's centre (pixels), and its turn (degrees)."""
    centre = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    return float(np.hypot(*(matrix[:, :2] @ centre + matrix[:, 2] - centre))), abs(_angle_of(matrix))


def measure(copies: Sequence[np.ndarray], flat_copies: Sequence[np.ndarray] | None = None) -> Registration:
    """The reference and the search the training images' working copies call for (see the module).
    With `flat_copies` (the same images' flattened working copies) a part that moves about the
    frame is matched on those (`flat`); a scene that stands still is matched on `copies` alone."""
    copies = [np.asarray(c, np.float32) for c in copies]
    shape = copies[0].shape
    still = _standardised(np.mean(copies, axis=0))
    at_rest = [float(cv2.matchTemplate(c, still, cv2.TM_CCOEFF_NORMED).max()) for c in copies]
    if np.median(at_rest) >= STILL_CORRELATION:
        # A scene that stands still (a part on a fixture, on a board): the plain mean is sharp
        # and each image sits on it at most a few pixels away. Registered by a shift that small,
        # to the scene as a whole: a part out of its place on the board stays out of place.
        reach = STILL_REACH * max(shape)
        maps = [match(c, still, reach, 0)[0] for c in copies]
        shifts = np.array([_motion(m, shape)[0] for m in maps])
        if np.percentile(shifts, 90) <= STILL_SHIFT:
            return Registration(still)
        reference = _standardised(np.mean([_warp(c, m) for c, m in zip(copies, maps)], axis=0))
        return Registration(reference, min(reach, float(shifts.max()) * SHIFT_SLACK + SHIFT_MARGIN), 0.0)
    # The part moves about the frame: the reference is the image most like the plain mean, then
    # twice the mean of all of them registered to it.
    flat = flat_copies is not None
    if flat:
        copies = [np.asarray(c, np.float32) for c in flat_copies]
    reach = BUILD_SHIFT * max(shape)
    reference = copies[int(np.argmax(at_rest))]
    for _ in range(2):
        maps = [match(c, reference, reach, 180)[0] for c in copies]
        reference = _standardised(np.mean([_warp(c, m) for c, m in zip(copies, maps)], axis=0))
    motions = np.array([_motion(m, shape) for m in maps])
    shifts, turns = motions[:, 0], motions[:, 1]
    max_shift = min(reach, float(shifts.max()) * SHIFT_SLACK + SHIFT_MARGIN)
    turn = float(np.percentile(turns, 90))
    max_angle = 0.0 if turn <= STILL_ANGLE else (180.0 if turns.max() > FREE_TURN
                                                 else min(180.0, float(turns.max()) + ANGLE_MARGIN))
    return Registration(reference, max_shift, max_angle, flat=flat)


def _standardised(image: np.ndarray) -> np.ndarray:
    return ((image - image.mean()) / max(float(image.std()), 1e-6)).astype(np.float32)


def _warp(work: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(work, matrix, (work.shape[1], work.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def frame_matrix(gray: np.ndarray, registration: Registration | None, shape: tuple[int, int]) -> np.ndarray:
    """The 2x3 map from a frame's pixels to the model's input of `shape` (height, width): the
    frame registered to the reference (or, for a fixed scene searched over no zoom, simply resized)."""
    height, width = gray.shape[:2]
    to_input = np.diag([shape[1] / width, shape[0] / height, 1.0])
    if registration is None or (registration.fixed and not registration.max_zoom):
        return to_input[:2]
    ref_h, ref_w = registration.reference.shape
    work_scale = np.diag([ref_w / width, ref_h / height, 1.0])
    found, _ = match(working_copy(gray, (ref_h, ref_w), registration.flat), registration.reference,
                     registration.max_shift, registration.max_angle, registration.max_zoom)
    ref_to_input = np.diag([shape[1] / ref_w, shape[0] / ref_h, 1.0])
    return (ref_to_input @ np.vstack([found, [0, 0, 1]]) @ work_scale)[:2]


def light_of(copies: Sequence[np.ndarray], works: Sequence[np.ndarray], registration: Registration) -> np.ndarray:
    """The good images' light: their copies as photographed (`light_copy`), each moved as its
    working copy (in `works`) registers, averaged."""
    maps = [match(w, registration.reference, registration.max_shift, registration.max_angle,
                  registration.max_zoom)[0] for w in works]
    return np.mean([cv2.warpAffine(c, m, (c.shape[1], c.shape[0]), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE) for c, m in zip(copies, maps)], axis=0)


def even_light(array: np.ndarray, light: np.ndarray, local: bool = False) -> np.ndarray:
    """A registered input (its intensities as photographed) divided by its light relative to the
    good images' `light` (see the module): the field is fitted on LIGHT_CELLS x LIGHT_CELLS cells
    of the log ratio, three times, each time on the LIGHT_KEEP share of the usable cells that
    fitted best; `local`: with the surface's misfit, median-filtered, added (see LIGHT_LOCAL)."""
    small = cv2.resize(array, (light.shape[1], light.shape[0]), interpolation=cv2.INTER_AREA)
    ratio = np.log(np.maximum(small, 1e-3)) - np.log(np.maximum(light, 1e-3))
    cells = cv2.resize(ratio, (LIGHT_CELLS, LIGHT_CELLS), interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
    usable = cv2.resize(light, (LIGHT_CELLS, LIGHT_CELLS), interpolation=cv2.INTER_AREA).ravel() >= LIGHT_DARKEST
    if usable.sum() * 4 < usable.size:
        return array
    coef = fit_surface(cells, usable, LIGHT_CELLS, LIGHT_KEEP)
    terms = surface_terms(LIGHT_CELLS, LIGHT_CELLS)
    height, width = array.shape[:2]
    field = surface_terms(height, width) @ coef
    if local:
        field = field + cv2.resize(_local_light(cells - terms @ coef, usable), (width, height),
                                   interpolation=cv2.INTER_LINEAR).ravel()
    limit = np.log(LIGHT_LIMIT)
    return (array / np.exp(np.clip(field, -limit, limit)).reshape(height, width)).astype(np.float32)


def _local_light(misfit: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """The light the surface missed, on the cells: each cell's median misfit over the LIGHT_LOCAL
    x LIGHT_LOCAL cells around it, leaving out cells the good images' light does not reach and
    cells further off than any light (LIGHT_LOCAL_MOST: a part missing or out of place), then
    smoothed."""
    cells = np.where(usable & (np.abs(misfit) <= LIGHT_LOCAL_MOST), misfit, np.nan).reshape(LIGHT_CELLS, LIGHT_CELLS)
    reach = LIGHT_LOCAL // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(cells, reach, mode="edge"), (LIGHT_LOCAL, LIGHT_LOCAL))
    ordered = np.sort(windows.reshape(LIGHT_CELLS, LIGHT_CELLS, -1), axis=2)  # the cells left out last
    counted = np.isfinite(ordered).sum(axis=2)[..., None]
    middle = [np.take_along_axis(ordered, np.maximum(at, 0), 2)[..., 0] for at in ((counted - 1) // 2, counted // 2)]
    median = np.where(counted[..., 0] > 0, (middle[0] + middle[1]) / 2, 0.0)
    return cv2.GaussianBlur(median.astype(np.float32), (0, 0), LIGHT_LOCAL_BLUR, borderType=cv2.BORDER_REFLECT)


def seen_share(matrix: np.ndarray, shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray | None:
    """For an input of `size` (width, height) that the 2x3 `matrix` maps a frame of `shape`
    (height, width) to: how much of each input pixel the frame covers (1 inside, 0 beyond its
    edge), or None when the frame covers the whole input."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    corners = np.array([[0, 0], [size[0] - 1, 0], [size[0] - 1, size[1] - 1], [0, size[1] - 1]], np.float64)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    if points.min() >= 0 and (points[:, 0] <= shape[1] - 1).all() and (points[:, 1] <= shape[0] - 1).all():
        return None
    return cv2.warpAffine(np.ones(shape, np.float32), np.asarray(matrix, np.float64), size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def fill_unseen(array: np.ndarray, light: np.ndarray, seen: np.ndarray | None) -> np.ndarray:
    """An evened input whose pixels the camera did not see (`seen` below 1, see `seen_share`)
    take the good images' `light` there instead: an edge the camera missed is neither a defect
    nor the frame's last pixels repeated, which the model would judge as one."""
    if seen is None:
        return array
    # The light scaled as `frame_matrix` scales the reference to the input (pixel 0 on pixel 0).
    height, width = array.shape[:2]
    scale = np.array([[width / light.shape[1], 0, 0], [0, height / light.shape[0], 0]])
    shown = cv2.warpAffine(light, scale, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (seen * array + (1.0 - seen) * shown).astype(np.float32)
