"""Import TensorFlow/Keras once, quietly, with its environment set before TF starts.

TensorFlow's C++ side prints at import, whatever `TF_CPP_MIN_LOG_LEVEL` says: "All log messages
before absl::InitializeLog() is called are written to STDERR" and an informational line about
oneDNN, once per native library it loads. Those go straight to file descriptor 2, so the import
runs with that descriptor pointed at a temporary file; afterwards every captured line that is not
such routine chatter is written back to stderr, so a real error (a failed import) still shows.
Python-side warnings (e.g. "tf.function retracing") go through TF's logger, set to errors only.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING logs once started; errors show
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Lines TensorFlow's native libraries print while loading: absl's notice, then INFO (I) and WARNING
# (W) lines in glog format (oneDNN, CPU instructions) and the continuation of the CPU-feature one.
ROUTINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


def without_routine_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not ROUTINE.match(line))


def _import_quietly() -> None:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep quiet
        importlib.import_module("tensorflow")
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module("tensorflow")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = without_routine_lines(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


if "tensorflow" not in sys.modules:
    _import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "model_threads", "use_threads"]


def use_threads(threads: int) -> bool:
    """Run each model operation on `threads` threads, and one operation at a time when 1. Only
    possible before TensorFlow's first operation: returns False (and changes nothing) after it."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    return True


def model_threads() -> int:
    """The threads an operation runs on (TensorFlow's 0 means one per core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or (os.cpu_count() or 1)
