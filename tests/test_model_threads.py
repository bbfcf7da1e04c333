"""The threads the model runs on: set before TensorFlow's first operation (the daemon's
--model-threads), refused after it without changing anything."""

import subprocess
import sys

SCRIPT = """
from inspector.tf_setup import model_threads, use_threads, tf
print(use_threads(2), model_threads())
tf.constant([1.0, 2.0]) * 2.0  # the first operation: the thread pools are made now
print(use_threads(1), model_threads())
"""


def test_the_model_threads_are_set_before_the_first_operation_and_kept_after_it():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True 2", "False 2"]
