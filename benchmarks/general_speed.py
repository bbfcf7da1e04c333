"""Model speed of a bundle: preparing a frame (decoding; registration and resizing) and the
model per image, at batch 1 and batch 32, and judging end to end, over the PNG images of the
given folders (median of three passes, one decoding thread). Prints JSON.

    PYTHONPATH=. python benchmarks/general_speed.py MODEL_DIR IMAGE_DIR...
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from inspector.bundle import load_bundle
from inspector.inference import Inferencer
from inspector.preprocess import prepare_frame, read_frame
from inspector.registration import Registration


def per_image_ms(work, count: int) -> float:
    """Milliseconds per image of `work()` over `count` images, the median of three passes."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times)) / count


def main(model_dir: str, folders: list[str]) -> dict:
    bundle = load_bundle(model_dir)
    config = bundle.pipeline.preprocess
    stored = bundle.training.get("registration")
    registration = Registration.from_dict(stored) if stored else None
    paths = sorted(path for folder in folders for path in Path(folder).glob("*.png"))
    frames = [read_frame(path) for path in paths]
    arrays = np.stack([prepare_frame(frame, config, None, None, registration).array for frame in frames])
    result = {"images": len(paths), "input": list(config.shape)}
    result["decode_ms"] = per_image_ms(lambda: [read_frame(path) for path in paths], len(paths))
    result["prepare_ms"] = per_image_ms(
        lambda: [prepare_frame(frame, config, None, None, registration) for frame in frames], len(frames))
    with Inferencer(bundle, threads=1) as inferencer:
        inferencer.warm_up(32)
        result["model_ms_batch1"] = per_image_ms(
            lambda: [inferencer.forward(arrays[i:i + 1], 1) for i in range(len(arrays))], len(arrays))
        result["model_ms_batch32"] = per_image_ms(lambda: inferencer.forward(arrays, 32), len(arrays))
        result["judge_ms_per_image_batch32"] = per_image_ms(
            lambda: list(inferencer.judge(paths, batch_size=32)), len(paths))
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:]), indent=1))
