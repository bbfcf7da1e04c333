"""The light a part was photographed under, measured from the frame's background, and the part
told from that background (`otsu_split`, `dark_region`): what the screw pipeline finds a part
with (`inspector.preprocess`), the synthetic defects are drawn on, and the patch memory sets its
part's level by.

`background_light` is the light a part's intensities are measured against; `corner_light`
follows light that falls off steeply into the frame's corners, for a second look at a frame
refused under the first.
"""

from __future__ import annotations

import functools

import numpy as np

from .cv_setup import cv2

# The background light is measured with a closing this share of the working copy wide: wider
# than any part, so the part is closed away and only the light around it is left.
LIGHT_KERNEL_SHARE = 0.25
# The light's blur (a sigma of a quarter of the closing) is done on a copy shrunk this many times:
# on the working copy it was the largest single cost of preparing a frame, and a light that
# smooth is the same to within 0.02-0.03% on average (0.5% at the frame's edge) blurred at a
# quarter of the size and brought back.
LIGHT_BLUR_SHRINK = 4


def otsu_split(image: np.ndarray, blur_sigma: float) -> tuple[float, np.ndarray]:
    """Otsu's level between a dark part and a bright background, measured on a blurred copy of
    a [0, 1] image: the level (in [0, 1]) and the mask of pixels darker than it."""
    grey8 = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(grey8, (0, 0), blur_sigma)
    level, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return level / 255.0, mask > 0


def dark_region(image: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Pixels darker than the background (Otsu's threshold on a blurred copy), as a bool mask."""
    return otsu_split(image, blur_sigma)[1]


# Frames evened out by their light put the background at this level, as a well-lit frame has it.
LIGHT_LEVEL = 0.8


def evened(image: np.ndarray, light: np.ndarray) -> np.ndarray:
    """`image` divided by its `light`, the background brought to LIGHT_LEVEL, kept to [0, 1]."""
    return np.clip(image / light * LIGHT_LEVEL, 0.0, 1.0)


def background_light(small: np.ndarray) -> np.ndarray:
    """How bright the light falls at each pixel of a (shrunk) frame, from its background: the
    light the part's intensities are measured against.

    A closing wider than the part replaces the dark part by the background around it; a blur
    smooths what is left (`blur_light`). Dividing by it evens out light falling off towards the
    corners, a lamp from one side or a hot spot, before the part's intensities are measured.
    """
    side = int(LIGHT_KERNEL_SHARE * max(small.shape)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))  # separable: fast
    light = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    return np.maximum(blur_light(light, side), 1e-3)


def corner_light(small: np.ndarray) -> np.ndarray:
    """How bright the light falls at each pixel of a (shrunk) frame, followed into its corners:
    the light a frame refused under `background_light` is looked at again under (`inspector.preprocess.locate_part`).

    Its broad shape (light falling off towards the corners or from one side) is a second-degree
    surface fitted to the frame's background (`light_surface`). What the surface leaves (a hot
    spot) is the frame divided by it, blurred over the background alone: the part's pixels (and
    a margin) left out of the blur and of its weights. `background_light`'s closing cannot follow
    light falling off into a corner (it takes the brighter light further in), which leaves the
    corners of a frame under steep vignetting darker than its background, joined to a part lying
    near them.
    """
    side = int(LIGHT_KERNEL_SHARE * max(small.shape)) | 1
    surface = light_surface(small)
    rest = small / surface
    part = cv2.dilate(dark_region(rest, 1.0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    background = (~part).astype(np.float32)
    if background.mean() < 0.25:  # hardly any background to measure: the surface alone
        return surface
    # A blur of the background alone, divided by the blur of where it is: the part left out.
    weight = np.maximum(blur_light(background, side), 1e-3)
    return np.maximum(surface * blur_light(rest * background, side) / weight, 1e-3)


# The light's broad shape is fitted on this many x this many cells of the frame, three times,
# each time on this share of the cells that fitted best: the part's cells (darker) drop out.
LIGHT_SURFACE_CELLS = 16
LIGHT_SURFACE_KEEP = 0.7
# Light's broad shape, here and in the registration's evening of light: a surface of this degree.
SURFACE_DEGREE = 2


def light_surface(small: np.ndarray) -> np.ndarray:
    """The second-degree surface in x and y fitted to the background of `small` (see
    LIGHT_SURFACE_KEEP), at every pixel of it."""
    height, width = small.shape
    cells = cv2.resize(small.astype(np.float32), (LIGHT_SURFACE_CELLS, LIGHT_SURFACE_CELLS),
                       interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
    coef = fit_surface(cells, np.ones(cells.size, bool), LIGHT_SURFACE_CELLS, LIGHT_SURFACE_KEEP)
    surface = (surface_terms(height, width) @ coef).reshape(height, width).astype(np.float32)
    return np.maximum(surface, max(0.05 * float(cells.max()), 1e-3))


def fit_surface(cells: np.ndarray, usable: np.ndarray, side: int, keep: float) -> np.ndarray:
    """The coefficients (over `surface_terms`) of the surface least-squares fitted to `cells`
    (side x side, raveled) three times, each time on the `keep` share of the `usable` cells that
    fitted best: cells far off the light (a part, a defect) drop out."""
    terms = surface_terms(side, side)
    use = usable
    for _ in range(3):
        coef = np.linalg.lstsq(terms[use], cells[use], rcond=None)[0]
        misfit = np.abs(cells - terms @ coef)
        use = usable & (misfit <= np.quantile(misfit[usable], keep))
    return coef


@functools.lru_cache(maxsize=8)
def surface_terms(height: int, width: int) -> np.ndarray:
    """(height * width, terms): x^i y^j, i + j <= SURFACE_DEGREE, over [-1, 1] on pixel centres
    (kept: the frames of a line, and of a bundle, are all of one size)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (xs + 0.5) / width * 2 - 1, (ys + 0.5) / height * 2 - 1
    terms = np.stack([(x**i * y**j).ravel() for i in range(SURFACE_DEGREE + 1)
                      for j in range(SURFACE_DEGREE + 1 - i)], 1)
    terms.flags.writeable = False
    return terms


def blur_light(light: np.ndarray, side: int) -> np.ndarray:
    """`light` blurred by a Gaussian of sigma side / 4, done on a copy LIGHT_BLUR_SHRINK times
    smaller and brought back to its size."""
    shrink = LIGHT_BLUR_SHRINK
    if min(light.shape) < 4 * shrink:  # too small a copy to shrink
        return cv2.GaussianBlur(light, (0, 0), side / 4)
    # Sides made a multiple of `shrink` (edge pixels repeated), so the copy is exactly `shrink`
    # times smaller and comes back onto the same pixels.
    height, width = light.shape
    padded = cv2.copyMakeBorder(light, 0, -height % shrink, 0, -width % shrink, cv2.BORDER_REPLICATE)
    tiny = cv2.resize(padded, (padded.shape[1] // shrink, padded.shape[0] // shrink), interpolation=cv2.INTER_AREA)
    # Averaging over shrink x shrink pixels blurs a little already: the rest is blurred after.
    sigma = np.sqrt(max((side / 4) ** 2 - (shrink / 2) ** 2, 0.25)) / shrink
    blurred = cv2.GaussianBlur(tiny, (0, 0), sigma)
    back = cv2.resize(blurred, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_LINEAR)
    return back[:height, :width]
