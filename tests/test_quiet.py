"""The model commands keep stderr for what matters: no TensorFlow, absl, oneDNN or OpenCV chatter."""

import re
import shutil
import subprocess
import sys

from conftest import SAMPLE

# What TensorFlow, absl and OpenCV print on their own: absl's notice, glog-style lines
# (I1123 12:00:00.000 123 file.cc:45]), oneDNN and CPU-feature notices, retracing warnings,
# OpenCV's "[ WARN:0@1.2]" lines and libpng's errors.
NOISE = re.compile(r"absl|oneDNN|cpu_feature_guard|retracing|tensorflow|^[IWEF]\d{4} |\[ ?(WARN|INFO|ERROR)|libpng",
                   re.IGNORECASE | re.MULTILINE)


def inspector(*args, cwd):
    command = [sys.executable, "-c", "from inspector.cli import main; main()", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_train_score_and_watch_print_no_library_noise(tmp_path):
    trained = inspector("train", SAMPLE / "train" / "good", "--out", "m", "--epochs", "2", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    scored = inspector("score", "m", SAMPLE / "test" / "good", SAMPLE / "test" / "defect", cwd=tmp_path)
    assert scored.returncode in (0, 1), scored.stderr
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("000.png", "005.png"):
        shutil.copy(SAMPLE / "test" / "good" / name, inbox / name)
    data = (SAMPLE / "test" / "defect" / "000.png").read_bytes()
    (inbox / "truncated.png").write_bytes(data[: len(data) // 2])  # libpng: "input buffer is incomplete"
    (inbox / "text.png").write_text("not an image")
    from inspector.cv_setup import cv2

    tiff = cv2.imencode(".tif", cv2.imread(str(SAMPLE / "test" / "good" / "000.png")))[1].tobytes()
    (inbox / "cut.tif").write_bytes(tiff[: len(tiff) // 2])  # OpenCV: "[ERROR:0@0.1] ... TIFF_Error"
    watched = inspector("watch", inbox, "--model", "m", "--db", "db.sqlite", "--out", "out", "--exit-when-idle", "1",
                        "--incomplete-timeout", "0.5", "-v", cwd=tmp_path)
    assert watched.returncode == 0, watched.stderr
    assert "truncated.png: error" in watched.stderr and "000.png: ok" in watched.stderr  # its own log still shows
    assert "the model on 1 thread)" in watched.stderr  # --model-threads' default
    for result in (trained, scored, watched):
        assert not NOISE.search(result.stderr), result.stderr


def test_a_failed_import_still_shows_its_error_lines():
    from inspector.tf_setup import without_routine_lines

    captured = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                "I0000 00:00:1795466479.564287   18443 port.cc:153] oneDNN custom operations are on.\n"
                "E0000 00:00:1795466479.564287   18443 loader.cc:12] cannot load libtensorflow_cc.so.2\n"
                "Traceback (most recent call last):\n")
    assert without_routine_lines(captured) == (
        "E0000 00:00:1795466479.564287   18443 loader.cc:12] cannot load libtensorflow_cc.so.2\n"
        "Traceback (most recent call last):\n")
