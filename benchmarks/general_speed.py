"""Model speed of a bundle: preparing a frame (decoding; registration and resizing) and the
model per image, at batch 1 and batch 32, and judging end to end, over the PNG images of the
given folders (median of three passes, one decoding thread). Prints JSON.

    PYTHONPATH=. python benchmarks/general_speed.py MODEL_DIR IMAGE_DIR...
"""
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

from inspector.bundle import load_bundle
from inspector.inference import Inferencer
from inspector.preprocess import read_frame, prepare_frame
from inspector.registration import Registration

bundle = load_bundle(sys.argv[1])
paths = sorted(Path(p) for d in sys.argv[2:] for p in glob.glob(f"{d}/*.png"))
reg = bundle.training.get("registration")
reg = Registration.from_dict(reg) if reg else None
frames = [read_frame(p) for p in paths]
out = {"images": len(paths), "input": list(bundle.pipeline.preprocess.shape)}
def med(f):
    times = []
    for _ in range(3):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return float(np.median(times))
t = med(lambda: [read_frame(p) for p in paths]); out["decode_ms"] = 1000 * t / len(paths)
t = med(lambda: [prepare_frame(f, bundle.pipeline.preprocess, None, None, reg) for f in frames]); out["prepare_ms"] = 1000 * t / len(paths)
arrays = np.stack([prepare_frame(f, bundle.pipeline.preprocess, None, None, reg).array for f in frames])
with Inferencer(bundle, threads=1) as inf:
    inf.warm_up(32)
    t = med(lambda: [inf.forward(arrays[i:i + 1], 1) for i in range(len(arrays))]); out["model_ms_batch1"] = 1000 * t / len(arrays)
    t = med(lambda: inf.forward(arrays, 32)); out["model_ms_batch32"] = 1000 * t / len(arrays)
    t = med(lambda: list(inf.judge(paths, batch_size=32))); out["judge_ms_per_image_batch32"] = 1000 * t / len(paths)
print(json.dumps(out, indent=1))
