"""The one way images are judged with a trained bundle: pre-process -> forward -> post-process.

`score`, `evaluate`, `calibrate` and the daemon judge through an `Inferencer`; training
calibration and the benchmark use the same `forward` and `post_process` on arrays
(`inspector.models.components.running`). It never imports training code.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

import numpy as np

from .bundle import Bundle
from .cv_setup import MAX_PIXELS
from .errors import ImageError
from .formats import declared_pixels, read_bytes
from .models.components.running import forward, post_process
from .pictures import any_heat, write_heatmaps
from .decode_workers import DecodeWorkers, failure, prepared_item
from .preprocess import FrameChange, read_frames
from .regions import hot_regions, photo_matrix
from .registration import Registration
from .scoring import hot_contours
from .timing import STAGE_TIMES

# A file to read, or (its path, its bytes) when the caller has read it already (the daemon
# reads each file once, to hash it).
Source = Union[Path, tuple[Path, bytes]]


@dataclass
class Result:
    """The outcome for one image: a score and verdict, or an error with its reason."""

    path: Path
    verdict: str  # "ok", "defect" or "error"
    score: float | None = None
    error: str | None = None
    model_input: np.ndarray | None = None
    error_map: np.ndarray | None = None
    # With keep_maps: a shrunk copy of the photo and its matrix to the crop (`Prepared.preview`),
    # to draw the error map back onto the photo.
    frame: tuple[np.ndarray, np.ndarray] | None = None
    width: int | None = None  # of the frame as read, before preprocessing
    height: int | None = None
    processing_ms: float | None = None  # this image's decoding and preprocessing, and its share of the model call
    # The hot regions' outlines in the crop's pixels (`Inferencer.outlines`), found once for the
    # pictures and the stored regions.
    outlines: list[np.ndarray] | None = None


@dataclass
class Loading:
    """A batch being decoded and prepared (`Inferencer.load`): its paths and one future per file
    (a thread's, or a worker process's `decode_workers.Pending`)."""

    paths: list[Path]
    futures: list[Future]
    keep_maps: bool


def _batches(sources: Iterable[Source], size: int) -> Iterator[list[Source]]:
    """`sources` in lists of `size` (the last one shorter)."""
    batch: list[Source] = []
    for source in sources:
        batch.append(source)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def default_threads() -> int:
    """One decoding thread per core, at most four: more threads than cores only made them wait
    for each other and for the memory (a burst ran 2-8% slower with four on two cores)."""
    return max(1, min(4, os.cpu_count() or 1))


class PixelBudget:
    """A semaphore on pixels: decodings together never declare more than `pixels` (their memory
    is what a decoded frame takes, whatever the file's size). An image whose size cannot be told
    from its header takes the whole budget."""

    def __init__(self, pixels: int):
        self.pixels = pixels
        self._free = pixels
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int | None):
        wanted = self.pixels if pixels is None else min(pixels, self.pixels)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= wanted)
            self._free -= wanted
        try:
            yield
        finally:
            with self._changed:
                self._free += wanted
                self._changed.notify_all()


# One budget for the whole process: as many pixels as the largest image accepted, so one such
# image is decoded at a time, and a hundred 1-megapixel frames at once.
DECODING = PixelBudget(MAX_PIXELS)


class Inferencer:
    """Judges images with one bundle: `pre_process` a file, `forward` a batch, `post_process`
    its outputs into scores, error maps and verdicts, `write_pictures`; `judge` does it all.

    With `contain_failures`, any failure while reading or preparing one file (a decoder error
    of its own kind, say) becomes that file's error result instead of stopping the batch: the
    daemon must keep running. Otherwise only an `ImageError` does.
    """

    def __init__(self, bundle: Bundle, threads: int | None = None, contain_failures: bool = False,
                 processes: bool = False):
        if bundle.model is None:
            raise ValueError("the bundle's model is not loaded; use load_bundle()")
        self.bundle = bundle
        self.pipeline = bundle.pipeline
        self.heat_scale = bundle.heat_scale
        # The part's length in the training images: a part far from it is refused (wrong zoom).
        self.part_length = bundle.training.get("part_length")
        # pose = "register": the reference made from the training images that frames are registered to.
        registration = bundle.training.get("registration")
        self.registration = Registration.from_dict(registration) if registration else None
        self.contain_failures = contain_failures
        # Decoding PNGs dominates; OpenCV, ISA-L and numpy release the GIL, so threads decode in
        # parallel. With `processes` (the daemon) worker processes do (`decode_workers`), the
        # threads kept for frames changed on the way (`change_for`) and frames given as arrays.
        threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inspector-decode")
        self._settings = (self.pipeline.preprocess, self.part_length, self.registration)  # `prepared_item`'s
        self._workers = DecodeWorkers(self._settings, threads, DECODING) if processes else None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._workers is not None:
            self._workers.close()

    def __enter__(self) -> Inferencer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pre_process(
        self,
        source: str | os.PathLike | bytes | np.ndarray,
        change: FrameChange | None = None,
        path: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """A file (path or its bytes) or an already-decoded [0, 1] grey frame -> the model's input."""
        return self._prepared(source, change, path)[0]

    def warm_up(self, batch_size: int) -> None:
        """Run the model once at batch 1 and at `batch_size` on blank inputs: tracing the graph
        and setting up the kernels for those sizes takes ~0.4 s, which the first parts judged
        would otherwise wait for."""
        for size in sorted({1, batch_size}):
            self.forward(np.full((size, *self.pipeline.preprocess.shape), 0.5, np.float32), batch_size)

    def forward(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        return forward(self.bundle.model, batch, batch_size)

    def post_process(self, inputs: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Model inputs and outputs -> image scores, error maps and verdicts."""
        scores, maps = post_process(inputs, outputs, self.pipeline.scoring)
        return scores, maps, [self.verdict(float(s)) for s in scores]

    def verdict(self, score: float) -> str:
        return self.bundle.verdict(score)

    def regions(self, result: Result) -> list[dict] | None:
        """The hot regions of a result judged with `keep_maps` (`inspector.regions`), in the
        photo's pixels; None for an error or a result without its maps."""
        if result.error_map is None or result.frame is None or not result.width:
            return None
        outlines = self.outlines(result)
        if not outlines:
            return []
        matrix = photo_matrix(result.frame[0], result.frame[1], result.width)
        return hot_regions(result.error_map, self.pipeline.scoring, matrix, outlines,
                           self.bundle.threshold, result.verdict == "defect",
                           mm_per_pixel=self.pipeline.preprocess.mm_per_pixel)

    def outlines(self, result: Result) -> list[np.ndarray]:
        """The outlines of a result's hot regions in the crop's pixels (`scoring.hot_contours`)."""
        if result.outlines is None and self._cool(result):
            result.outlines = []
        if result.outlines is None:
            result.outlines = hot_contours(result.error_map, self.bundle.threshold, self.pipeline.scoring,
                                           defect=result.verdict == "defect")
        return result.outlines

    def _cool(self, result: Result) -> bool:
        """Whether an ok result has no hot region, known from its score alone: under a max or
        smoothed-max reducer the score is the score map's maximum (the same blur of the same map),
        so a score at or under the threshold leaves nothing above it (most parts: no map to blur)."""
        return (result.verdict == "ok" and result.score is not None and result.score <= self.bundle.threshold
                and self.pipeline.scoring.reduce in ("max", "smoothed_max"))

    def shows_heat(self, result: Result) -> bool:
        """Whether a result judged with `keep_maps` has anything for its overlays to show: a hot
        region, or heat above a good part's level. An overlay of one that has not is the photo."""
        return bool(self.outlines(result)) or any_heat(result.error_map, self.heat_scale)

    def write_pictures(self, result: Result, heatmap: Path, overlay: Path | None,
                       crop_overlay: Path | None = None) -> None:
        """The pictures of a result judged with `keep_maps`, on the bundle's scale: the heatmap of
        the upright crop, (if asked) the overlay on the photo and the overlay on the crop; the
        regions above the threshold outlined on both overlays."""
        write_heatmaps(result.model_input, result.error_map, self.heat_scale, heatmap, overlay, result.frame,
                       crop_overlay, self.outlines(result))

    def judge(self, sources: Iterable[Source], batch_size: int = 32,
              change_for: Callable[[Path], FrameChange | None] | None = None,
              keep_maps: bool = False) -> Iterator[Result]:
        """Judge files in batches, in order (`judge_in_batches`)."""
        return judge_in_batches(self, sources, batch_size, change_for, keep_maps)

    def load(self, sources: list[Source], change_for=None, keep_maps: bool = False) -> Loading:
        """Start decoding and preparing a batch on the decoding threads; `score` finishes it. The
        caller may do other work (score the batch before) while the threads decode."""
        paths = [Path(s[0] if isinstance(s, tuple) else s) for s in sources]
        if self._workers is not None and change_for is None and all(
                not isinstance(s, tuple) or isinstance(s[1], (bytes, type(None))) for s in sources):
            futures = [self._workers.submit(s, keep_maps) for s in sources]
        else:
            futures = [self._pool.submit(self._load, s, change_for, keep_maps) for s in sources]
        return Loading(paths, futures, keep_maps)

    def _prepared(self, source, change: FrameChange | None, path, keep_frame: bool = False):
        """The model input, the (height, width) of the frame it came from, and (`keep_frame`) a
        shrunk copy of the frame with its matrix; a file is decoded under the pixel budget,
        and refused when a pixel is not a finite number."""
        if isinstance(source, np.ndarray):
            return self._from_frame(source, path, keep_frame)
        if not isinstance(source, (bytes, bytearray)):
            source, path = read_bytes(source), path or source
        with DECODING.hold(declared_pixels(source)):  # held while the decoded frame is in memory
            with STAGE_TIMES.stage("decode"):
                gray, original = read_frames(source, change, path)  # a frame with NaN or infinity is refused
            return self._from_frame(gray, path, keep_frame, original)

    def _from_frame(self, gray: np.ndarray, path, keep_frame: bool, original: np.ndarray | None = None):
        with STAGE_TIMES.stage("preprocess"):
            return prepared_item(gray, original, self._settings, path, keep_frame)

    def _load(self, source: Source, change_for, keep_frame: bool = False):
        """The model input, frame size and preview (or the error), and the milliseconds it took."""
        path, data = source if isinstance(source, tuple) else (Path(source), None)
        started = time.perf_counter()
        try:
            change = change_for(path) if change_for else None
            item = self._prepared(path if data is None else data, change, path, keep_frame)
        except ImageError as exc:
            item = exc
        except Exception as exc:
            if not self.contain_failures:
                raise
            item = failure(path, exc)
        return item, (time.perf_counter() - started) * 1000

    def score(self, loading: Loading, batch_size: int = 32) -> list[Result]:
        """The results of a batch started by `load`, in its order: one model call for the frames
        that could be prepared, an error result for each that could not."""
        paths, keep_maps = loading.paths, loading.keep_maps
        loaded, own_ms = zip(*(future.result() for future in loading.futures))
        results: list[Result | None] = [
            Result(path, "error", error=item.reason, processing_ms=ms) if isinstance(item, ImageError) else None
            for path, item, ms in zip(paths, loaded, own_ms)
        ]
        good = [i for i, item in enumerate(loaded) if not isinstance(item, ImageError)]
        if good:
            started = time.perf_counter()
            arrays = np.stack([loaded[i][0] for i in good])
            with STAGE_TIMES.stage("model", len(arrays)):
                outputs = self.forward(arrays, batch_size)
            with STAGE_TIMES.stage("score", len(arrays)):
                scores, maps, verdicts = self.post_process(arrays, outputs)
            share_ms = (time.perf_counter() - started) * 1000 / len(good)
            for j, i in enumerate(good):
                height, width = loaded[i][1]
                if verdicts[j] == "error":
                    results[i] = Result(paths[i], "error", error=f"the model gave a non-finite score ({scores[j]})",
                                        processing_ms=own_ms[i] + share_ms)
                    continue
                results[i] = Result(
                    paths[i], verdicts[j], score=float(scores[j]),
                    model_input=arrays[j] if keep_maps else None,
                    error_map=maps[j] if keep_maps else None, frame=loaded[i][2],
                    width=width, height=height, processing_ms=own_ms[i] + share_ms,
                )
        return results


def judge_in_batches(inferencer: Inferencer, sources: Iterable[Source], batch_size: int = 32,
                     change_for: Callable[[Path], FrameChange | None] | None = None,
                     keep_maps: bool = False) -> Iterator[Result]:
    """Judge files in batches, in order; unreadable files come back as `error` results. The
    next batch is decoded and prepared (`Inferencer.load`) while the one in hand is scored."""
    loaded: list[Loading] = []  # at most two: the batch being scored and the next
    try:
        for batch in _batches(sources, batch_size):
            loaded.append(inferencer.load(batch, change_for, keep_maps))
            if len(loaded) == 2:
                yield from inferencer.score(loaded.pop(0), batch_size)
        while loaded:
            yield from inferencer.score(loaded.pop(0), batch_size)
    finally:  # a caller that stops early does not leave the next batch decoding
        for loading in loaded:
            for future in loading.futures:
                future.cancel()

