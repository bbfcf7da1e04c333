"""File -> normalized array (square frame, or the part cut out and turned upright): the one
place a frame is made into the model's input. Files are read and decoded by `inspector.formats`.

Training, scoring, evaluation and the daemon all call `preprocess` with the pipeline's
`[preprocess]` settings stored in the model bundle, so training and serving cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cv_setup import cv2
from .errors import ImageError
from .formats import check_finite, decode_frame, read_bytes, to_unit
from .lighting import background_light, corner_light, dark_region, evened
from .registration import Registration, even_light, fill_unseen, frame_matrix, seen_share
from .settings import PreprocessConfig


@dataclass(frozen=True)
class Exposure:
    """A change of lighting applied to a raw image: gain times intensity plus offset (grey levels)."""

    gain: float = 1.0
    offset: float = 0.0

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        return apply_exposure(gray, self)


# Something done to a decoded frame before it is prepared (a change of exposure, a line
# nuisance): evaluation uses it to see how a model copes.
FrameChange = Callable[[np.ndarray], np.ndarray]


def normalize(gray: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Resize a [0, 1] grey image to the pipeline's square size and normalize its intensities."""
    size = config.size
    interpolation = cv2.INTER_AREA if min(gray.shape) >= size else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (size, size), interpolation=interpolation)
    return _intensities(resized, config, None)


def _intensities(image: np.ndarray, config: PreprocessConfig, region: np.ndarray | None) -> np.ndarray:
    """Apply the pipeline's intensity normalisation; "standardize" measures on `region` if given."""
    if config.normalize == "standardize":
        values = image[region] if region is not None and region.any() else image
        std = float(values.std())
        image = 0.5 + config.target_std * (image - float(values.mean())) / max(std, 1e-6)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Pose:
    """Where a part lies in a frame: `angle` is the direction from its wide end (a screw's head)
    to its narrow end in degrees (image coordinates, y down), `centre` the middle of its long
    axis (x, y) and `length` its extent along that axis, both in frame pixels."""

    angle: float
    centre: tuple[float, float]
    length: float


@dataclass(frozen=True)
class Located:
    """A part found in a frame: its pose; the working copy it was found on (the frame shrunk to
    `scale` times its size, as photographed); with `flatten_light` the background light measured
    on that copy."""

    pose: Pose
    light: np.ndarray | None
    scale: float
    working: np.ndarray


# Parts are found on a copy of the frame shrunk to about this many pixels across.
POSE_WORKING_SIZE = 256
# Below this share of the frame, the largest dark blob is noise, not a part.
MIN_PART_SHARE = 0.002
# A second dark blob at least this share of the largest one's area is a second part.
SECOND_PART_SHARE = 0.25
def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` `scale` (0 < scale < 1) times its size, each pixel the mean of the area it covers
    (`cv2.INTER_AREA`). A float image shrunk by 1/2, 1/4, 1/8... with sides that divide by it
    is shrunk in halvings: the same pixels to float rounding, and for 1024 -> 256 in a fifth to
    a half of the time, by host (OpenCV's area shrink by a factor of two has a fast path that a
    factor of four has not). Integer pixels would be rounded at every halving: they take the
    single shrink."""
    if not 0 < scale < 1:
        raise ValueError(f"shrink takes a scale between 0 and 1, not {scale}")
    factor = round(1 / scale)
    height, width = image.shape[:2]
    if (image.dtype.kind == "f" and factor > 1 and factor & (factor - 1) == 0 and abs(factor * scale - 1) < 1e-9
            and height % factor == 0 and width % factor == 0):
        while factor > 1:
            height, width, factor = height // 2, width // 2, factor // 2
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def locate_part(gray: np.ndarray, config: PreprocessConfig | None = None,
                path: str | os.PathLike | None = None) -> Located:
    """Segment the part (the largest blob darker than the background) and measure its pose
    (`_blob_pose`). Raises `ImageError` when no part can be judged from this frame: none found,
    one cut by the frame's edge, more than one. With `flatten_light`, a frame refused under
    `background_light` as not in view is looked at again under `corner_light` (`_second_look`);
    when that refuses it too, the first look's reason is given.
    """
    scale = min(1.0, POSE_WORKING_SIZE / max(gray.shape))
    small = shrink(gray, scale) if scale < 1 else gray
    check_view = config is not None and config.check_view
    if config is None or not config.flatten_light:
        return Located(_blob_pose(*_part_blob(small, check_view, path), scale), None, scale, small)
    light = background_light(small)
    first = evened(small, light)
    try:
        blob = _part_blob(first, check_view, path)
    except ImageError as refused:
        blob = None
        if refused.reason.startswith(NOT_IN_VIEW):  # not a blank frame, nor one with no part
            blob = _second_look(small, first, check_view, path)
        if blob is None:
            raise refused from None
    return Located(_blob_pose(*blob, scale), light, scale, small)


# The refusals a second look may overturn: a dark corner joined to the part, or taken for a second part.
NOT_IN_VIEW = "part not in view"
# A second look is taken only when the dark pixels the first look found on the frame's edge
# change by less than this (on the evened copy, the background at `lighting.LIGHT_LEVEL`) over
# EDGE_REACH pixels along the edge: light falling off changes gently, a part's outline sharply.
EDGE_STEP = 0.08
EDGE_REACH = 4
# And what the second look finds is a part only when its median is below this share of the
# background's (a light the fit got wrong leaves a broad, faint blob, not a dark part), and when
# it keeps this many working pixels clear of the edge (a part grazing the edge, its end lit away).
PART_CONTRAST = 0.75
EDGE_CLEARANCE = 6


def _second_look(small: np.ndarray, first: np.ndarray, check_view: bool, path):
    """The part's blob found under `corner_light`, for a frame whose first look (`first`, the
    frame evened by `background_light`) refused it; None when the second look may not be taken
    or finds no part that can be judged.

    A corner left dark by steep vignetting can join a part lying near it; a part's own pixels on
    the edge must not be lit away by a light fitted wrongly. So the second look is taken only
    when every dark stretch of the first look's edge is free of a part's outline (EDGE_STEP),
    and what it finds must stand out from its background as a part does (PART_CONTRAST) and keep
    clear of the edge (EDGE_CLEARANCE).
    Frames found the first time are not looked at again: they keep the pose the models were
    trained with.
    """
    if not _dark_edge_is_light(first):
        return None
    second = evened(small, corner_light(small))
    try:
        labels, stats, label = _part_blob(second, check_view, path)
    except ImageError:
        return None
    x, y, w, h = (int(stats[label, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
    height, width = second.shape
    if min(x, y, width - x - w, height - y - h) < EDGE_CLEARANCE:
        return None
    if float(np.median(second[labels == label])) >= PART_CONTRAST * float(np.median(second[labels == 0])):
        return None
    return labels, stats, label


def _dark_edge_is_light(evened: np.ndarray) -> bool:
    """Whether the dark pixels on the frame's edge (Otsu's, as `dark_region` finds them) change
    gently along it, as light does: no step of EDGE_STEP or more over EDGE_REACH pixels within
    them or EDGE_REACH pixels beyond them."""
    blurred = cv2.GaussianBlur(evened.astype(np.float32), (0, 0), 1.0)
    dark = dark_region(evened, 1.0)
    ring = np.concatenate([blurred[0, :], blurred[1:, -1], blurred[-1, -2::-1], blurred[-2:0:-1, 0]])
    on_ring = np.concatenate([dark[0, :], dark[1:, -1], dark[-1, -2::-1], dark[-2:0:-1, 0]])
    if on_ring.all():
        return False  # dark all round: no background on the edge to tell light from a part
    step = np.abs(np.roll(ring, -EDGE_REACH) - ring)  # from each pixel to the one EDGE_REACH further on
    near = np.zeros_like(on_ring)
    for shift in range(-2 * EDGE_REACH, EDGE_REACH + 1):  # the steps touching a dark stretch or its margin
        near |= np.roll(on_ring, shift)
    return not bool((step[near] >= EDGE_STEP).any())


def _part_blob(small: np.ndarray, check_view: bool, path) -> tuple[np.ndarray, np.ndarray, int]:
    """The part in a shrunk, evened frame: the connected components' labels and stats, and the
    part's label (the largest dark blob). Raises `ImageError` when none can be judged."""
    if float(small.max() - small.min()) < 0.02:
        raise ImageError(path, "no part found: the image is blank")
    mask = dark_region(small, 1.0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count < 2:
        raise ImageError(path, "no part found: nothing stands out from the background")
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1]
    label = 1 + int(order[0])
    if areas[order[0]] < MIN_PART_SHARE * mask.size:
        raise ImageError(path, "no part found: the largest dark region is too small")
    if check_view:
        _check_in_view(stats, label, areas, order, mask.shape, path)
    return labels, stats, label


def _blob_pose(labels: np.ndarray, stats: np.ndarray, label: int, scale: float) -> Pose:
    """The pose of blob `label` (of `cv2.connectedComponentsWithStats` on a copy of the frame
    `scale` times its size), in frame pixels. Its long axis is the principal axis of its pixels
    (of their 2x2 covariance, in closed form; only the blob's box is searched for them): for a
    blob with no longer axis (round, square) it is x. Of the two ends, the one whose pixels spread
    wider across the axis is the head (a symmetric blob's ends tie: either may be taken)."""
    x, y, w, h = (int(stats[label, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
    ys, xs = np.nonzero(labels[y:y + h, x:x + w] == label)
    xs, ys = (xs + x) / scale, (ys + y) / scale
    mean = np.array([xs.mean(), ys.mean()])
    dx, dy = xs - mean[0], ys - mean[1]
    theta = 0.5 * np.arctan2(2 * (dx @ dy), dx @ dx - dy @ dy)
    axis = np.array([np.cos(theta), np.sin(theta)])
    along = dx * axis[0] + dy * axis[1]
    spread = np.abs(dy * axis[0] - dx * axis[1])
    low, high = along.min(), along.max()
    third = (high - low) / 3
    if spread[along > high - third].mean() > spread[along < low + third].mean():
        axis, low, high = -axis, -high, -low  # the head is at the far end: turn round
    centre = mean + axis * (low + high) / 2
    return Pose(float(np.degrees(np.arctan2(axis[1], axis[0]))), (float(centre[0]), float(centre[1])),
                float(high - low))




def _check_in_view(stats: np.ndarray, label: int, areas: np.ndarray, order: np.ndarray,
                   shape: tuple[int, int], path) -> None:
    """A part cut by the frame's edge, or a second part beside it, cannot be judged."""
    x, y, w, h = (int(stats[label, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
    if x <= 0 or y <= 0 or x + w >= shape[1] or y + h >= shape[0]:
        raise ImageError(path, "part not in view: it touches the frame's edge (cut off, or not wholly in the picture)")
    parts = int((areas >= SECOND_PART_SHARE * areas[order[0]]).sum())
    if parts > 1:
        raise ImageError(path, f"part not in view: {parts} parts in the frame; one at a time can be judged")


def find_pose(gray: np.ndarray, path: str | os.PathLike | None = None) -> Pose:
    """The pose of the part in a frame (no light flattening, no view checks)."""
    return locate_part(gray, None, path).pose


def relative_length(pose: Pose, shape: tuple[int, int]) -> float:
    """The part's length as a share of the frame's shorter side: the same on a camera of another
    resolution, or a wider frame of the same height; different with another zoom or part."""
    return pose.length / min(shape)


@dataclass(frozen=True)
class Prepared:
    """A frame made ready for the model: `array` (the model's input); `matrix`, the 2x3 affine
    map from frame pixels to `array` pixels (error maps are drawn back onto the frame through its
    inverse); `preview`, the frame shrunk to at most PREVIEW_SIZE pixels (uint8, for pictures)
    with `preview_matrix` from its pixels to `array`'s; for a pose-normalised part its `pose` and
    `relative_length`."""

    array: np.ndarray
    frame_shape: tuple[int, int]
    preview: np.ndarray
    preview_matrix: np.ndarray
    pose: Pose | None = None
    relative_length: float | None = None
    matrix: np.ndarray | None = None


def align_part(gray: np.ndarray, config: PreprocessConfig, path: str | os.PathLike | None = None,
               expected_length: float | None = None, original: np.ndarray | None = None) -> Prepared:
    """Cut the part out of the frame, long axis horizontal and head left, normalized.

    With `expected_length` (the part's relative length in the training images) a part far
    smaller or larger than that is refused: another camera zoom, or another part.
    """
    located = locate_part(gray, config, path)
    pose = located.pose
    length = relative_length(pose, gray.shape)
    if expected_length and config.size_tolerance:
        ratio = length / expected_length
        if abs(ratio - 1) > config.size_tolerance:
            raise ImageError(path, f"part not in view: it is {ratio:.2f} times the size of the parts trained on "
                                   "(another zoom or camera, or another part)")
    width, height = config.crop_width, config.crop_height
    scale = width / (pose.length * config.crop_margin)
    matrix = cv2.getRotationMatrix2D(pose.centre, pose.angle, scale)
    matrix[:, 2] += np.array([width / 2 - pose.centre[0], height / 2 - pose.centre[1]])

    def cut(image: np.ndarray, image_scale: float, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The crop from `image`: the frame from `origin` (x, y) on, `image_scale` times its size."""
        cx, cy = (pose.centre[0] - origin[0]) * image_scale, (pose.centre[1] - origin[1]) * image_scale
        shift = cv2.getRotationMatrix2D((cx, cy), pose.angle, scale / image_scale)
        shift[:, 2] += np.array([width / 2 - cx, height / 2 - cy])
        return cv2.warpAffine(image, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # Only the part of the frame the crop covers (and a margin for the interpolation) is shrunk:
    # a seventh to a third of a frame, by the part's angle, where shrinking it all was the
    # second largest cost. The shrunk pixels' grid starts at the region's corner, not the
    # frame's: each is averaged over a window less than a frame pixel away.
    x0, y0, x1, y1 = _crop_bounds(matrix, (width, height), gray.shape[:2], 2 + 2 / scale)
    region = gray[y0:y1, x0:x1]
    if scale < 1:  # shrink first (area averaging, no aliasing), then rotate at the final scale
        crop = cut(cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale, (x0, y0))
    else:
        crop = cut(region, 1.0, (x0, y0))
    if located.light is not None:
        crop = evened(crop, cut(located.light, located.scale))
    return Prepared(_intensities(crop, config, dark_region(crop, 2.0)), gray.shape[:2],
                    *_preview(*_shrunk(gray if original is None else original), matrix), pose, length, matrix)


def register_frame(gray: np.ndarray, config: PreprocessConfig, registration: Registration | None,
                   path: str | os.PathLike | None = None, original: np.ndarray | None = None) -> Prepared:
    """The frame registered to the training images' reference (`inspector.registration`; none:
    the frame as it is) and resized to crop_width x crop_height, normalised over the whole input.
    When the registration keeps the good images' light, the input's light is evened out against
    it, and (`fill`, bundles trained since) what the camera did not see (the input's edge when it
    is nearer than in training, or a frame registered a few pixels over) is the good images' light
    there, not the frame's edge pixels repeated.

    Nothing about the part is checked: a part missing or out of place is for the model to judge.
    Only a blank frame (the light off, the lens covered) cannot be judged.
    """
    if float(gray.max() - gray.min()) < 0.02:
        raise ImageError(path, "nothing to judge: the image is blank")
    width, height = config.crop_width, config.crop_height
    matrix = frame_matrix(gray, registration, (height, width))
    # Shrunk first (area averaging, no aliasing), then moved at the final scale.
    factor = min(1.0, 1.5 * max(width / gray.shape[1], height / gray.shape[0]))
    shrunk = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else gray
    on_shrunk = np.array(matrix, np.float64).copy()
    on_shrunk[:, :2] /= factor
    array = cv2.warpAffine(shrunk, on_shrunk, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    if registration is not None and registration.light is not None:
        array = even_light(array, registration.light, registration.local_light)
        if registration.fill:
            array = fill_unseen(array, registration.light, seen_share(on_shrunk, shrunk.shape[:2], (width, height)))
    return Prepared(_intensities(array, config, None), gray.shape[:2],
                    *_preview(*_shrunk(gray if original is None else original), matrix), matrix=matrix)


def crop_corners(matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Where the corners of a crop of `size` (width, height) lie in the frame that `matrix`
    (frame -> crop) maps from: (4, 2) points (x, y), in order round the crop."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]], np.float64)
    return corners @ inverse[:, :2].T + inverse[:, 2]


def _crop_bounds(matrix: np.ndarray, size: tuple[int, int], shape: tuple[int, int],
                 margin: float) -> tuple[int, int, int, int]:
    """The frame's pixels (x0, y0, x1, y1) under a crop of `size` (width, height) that `matrix`
    maps to, `margin` pixels wider on every side, within a frame of `shape` (height, width)."""
    points = crop_corners(matrix, size)
    low = np.floor(points.min(axis=0) - margin).astype(int)
    high = np.ceil(points.max(axis=0) + margin).astype(int)
    x0, y0, x1, y1 = max(0, low[0]), max(0, low[1]), min(shape[1], high[0]), min(shape[0], high[1])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else (0, 0, shape[1], shape[0])


def apply_exposure(gray: np.ndarray, exposure: Exposure) -> np.ndarray:
    return np.clip(gray * exposure.gain + exposure.offset / 255.0, 0.0, 1.0).astype(np.float32)


def read_frame(
    source: str | os.PathLike | bytes,
    change: FrameChange | None = None,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """A file (path, or bytes already read from `path`) -> its decoded [0, 1] grey frame
    (`change`d, e.g. by an `Exposure`, if given).

    Raises `ImageError` with the reason when the file is empty, too large, corrupt or not an image.
    """
    return read_frames(source, change, path)[0]


def read_frames(
    source: str | os.PathLike | bytes,
    change: FrameChange | None = None,
    path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_frame`, and the frame as decoded when it is 8-bit and not `change`d (else None):
    the preview is shrunk from it (`prepare_frame`'s `original`)."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data, path = read_bytes(source), path or source
    decoded = decode_frame(data, path)
    gray = to_unit(decoded)
    original = decoded if decoded.dtype == np.uint8 else None
    if change is None:
        return gray, original
    changed = np.asarray(change(gray), np.float32)
    check_finite(changed, path)
    return changed, None


def preprocess(
    source: str | os.PathLike | bytes,
    config: PreprocessConfig,
    change: FrameChange | None = None,
) -> np.ndarray:
    """A file (path or bytes) -> float32 array of the pipeline's shape, ready for the model.

    Raises `ImageError` with the reason when the file is empty, too large, corrupt, not an image,
    or (pose normalisation) shows no part.
    """
    path = None if isinstance(source, (bytes, bytearray)) else source
    return prepare(read_frame(source, change), config, path)


def prepare(gray: np.ndarray, config: PreprocessConfig, path: str | os.PathLike | None = None,
            expected_length: float | None = None, registration: Registration | None = None) -> np.ndarray:
    """A decoded [0, 1] grey frame -> the model's input: the part cut out upright, the frame
    registered, or the frame resized. `expected_length`: see `align_part`; `registration`: see
    `register_frame`."""
    return prepare_frame(gray, config, path, expected_length, registration).array


def prepare_frame(gray: np.ndarray, config: PreprocessConfig, path: str | os.PathLike | None = None,
                  expected_length: float | None = None, registration: Registration | None = None,
                  original: np.ndarray | None = None) -> Prepared:
    """`prepare`, keeping where the part was found (to draw its error map back on the frame).
    `original`: the same frame as decoded, 8-bit, which the preview is shrunk from (the same
    pixels as from `gray`, five times faster)."""
    if config.pose == "axis":
        return align_part(gray, config, path, expected_length, original)
    if config.pose == "register":
        return register_frame(gray, config, registration, path, original)
    height, width = gray.shape[:2]
    matrix = np.array([[config.size / width, 0, 0], [0, config.size / height, 0]])
    return Prepared(normalize(gray, config), gray.shape[:2],
                    *_preview(*_shrunk(gray if original is None else original), matrix), matrix=matrix)


# Pictures of the photo (the heat drawn back onto it) are this many pixels on the longer side at
# most: QA's page shows one at about this size, where a scratch on a screw's head is still a
# dozen pixels long (shrinking a 1024-pixel frame to it costs about 0.3 ms).
PREVIEW_SIZE = 512


def _shrunk(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame shrunk to at most PREVIEW_SIZE on its longer side (area averaging), and the factor."""
    factor = min(1.0, PREVIEW_SIZE / max(gray.shape[:2]))
    if factor == 1.0:
        return gray, factor
    return cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA), factor


def _preview(shrunk: np.ndarray, factor: float, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame shrunk by `factor` ([0, 1], or 8-bit as decoded) as uint8, and the frame-to-array
    `matrix` for its pixels."""
    scaled = np.array(matrix, np.float64).copy()
    scaled[:, :2] /= factor  # array = M @ frame = M @ (preview / factor)
    if shrunk.dtype == np.uint8:
        return shrunk, scaled
    return (np.clip(shrunk, 0, 1) * 255 + 0.5).astype(np.uint8), scaled
