"""The screw's working copy shrunk at once or in halvings (`preprocess.shrink`): whether every
photo is prepared alike both ways (the pose and the model's input, their largest differences),
and the milliseconds per frame of `prepare_frame` each way, interleaved three times over the
first 40 photos. Prints JSON.

    PYTHONPATH=. python benchmarks/working_copy.py MODEL_DIR IMAGE_DIR...
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import inspector.preprocess as preprocess
from inspector.bundle import read_metadata
from inspector.cv_setup import cv2
from inspector.errors import ImageError
from inspector.formats import list_images


def at_once(image: np.ndarray, scale: float) -> np.ndarray:
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


WAYS = {"at once": at_once, "in halvings": preprocess.shrink}


def prepared(frame, config, path, way):
    preprocess.shrink = WAYS[way]  # locate_part looks the function up in the module at each call
    try:
        return preprocess.prepare_frame(frame[0], config, path, None, None, frame[1])
    except ImageError as exc:
        return str(exc)
    finally:
        preprocess.shrink = WAYS["in halvings"]


def main(model_dir: str, folders: list[str]) -> dict:
    config = read_metadata(model_dir).pipeline.preprocess
    paths = [p for folder in folders for p in list_images(Path(folder))]
    frames = {p: preprocess.read_frames(p) for p in paths}
    input_diff, pose_diff, refused, differ = 0.0, 0.0, 0, []
    for path, frame in frames.items():
        one, other = (prepared(frame, config, path, way) for way in WAYS)
        if isinstance(one, str) or isinstance(other, str):  # refused: both alike, or not
            if isinstance(one, str) and one == other:
                refused += 1
            else:
                differ.append(str(path))
            continue
        input_diff = max(input_diff, float(np.abs(one.array - other.array).max()))
        pose_diff = max(pose_diff, abs(one.pose.angle - other.pose.angle),
                        *np.abs(np.subtract(one.pose.centre, other.pose.centre)))
    timed = list(frames.items())[:40]
    times = {way: [] for way in WAYS}
    for _ in range(3):
        for way in WAYS:
            started = time.perf_counter()
            for path, frame in timed:
                prepared(frame, config, path, way)
            times[way].append(1000 * (time.perf_counter() - started) / len(timed))
    return {"photos": len(paths), "refused": refused, "judged_differently": differ,
            "model_input_max_diff": input_diff, "pose_max_diff": pose_diff,
            "prepare_ms_per_frame": {way: [round(t, 3) for t in ts] for way, ts in times.items()}}


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(json.dumps(main(sys.argv[1], sys.argv[2:]), indent=2))
