"""Decoding and preparing frames in worker processes, for the daemon.

In threads, decoding and preparing a frame take the interpreter's lock between their native
calls; the pictures, the line outputs and the daemon's own thread then wait for it, and a burst
leaves a tenth of two cores idle. Worker processes have locks of their own: the daemon's process
scores, writes and commits while they decode. What crosses between them: the file's bytes (as
read and hashed by the daemon) in, the model's input, the frame's size and the preview out.

Workers are started with `spawn` (never forked from a process running TensorFlow) and import no
TensorFlow. A worker that dies (killed, or crashed on a file) while it holds a file fails that
file's batch (the daemon then judges its files one by one, so a file that kills its worker gets
an error row of its own) and is started again; one that died while idle is started again before
it is handed the next file. Workers end with their daemon, even a killed one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from .errors import ImageError
from .formats import declared_pixels, read_bytes
from .preprocess import prepare_frame, read_frames
from .timing import STAGE_TIMES

log = logging.getLogger("inspector.decode")

_SETTINGS: dict = {}  # a worker's `prepared_item` settings, set once when it starts


def _start(settings: tuple) -> None:
    # A Ctrl-C or a service manager's SIGTERM reaches the whole process group: the daemon finishes
    # its batch in hand and then stops its workers, which must not die under it first.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _SETTINGS["settings"] = settings
    threading.Thread(target=_end_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()


def _end_with(parent: int) -> None:
    """A worker ends within a second of its daemon (killed, it cannot stop its workers itself)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def prepared_item(gray, original, settings: tuple, path, keep_frame: bool):
    """A decoded frame -> (the model input, the frame's (height, width), with `keep_frame` the
    preview and its matrix, else None); `settings`: the pipeline's preprocess config, the
    training images' part length and registration. The decoding threads' and workers' own."""
    config, part_length, registration = settings
    prepared = prepare_frame(gray, config, path, part_length, registration, original if keep_frame else None)
    return prepared.array, gray.shape[:2], (prepared.preview, prepared.preview_matrix) if keep_frame else None


def failure(path, exc: Exception) -> ImageError:
    """An unexpected error while preparing a file, as that file's error: the daemon keeps running."""
    return ImageError(path, f"cannot process image: {type(exc).__name__}: {exc}")


def _decode_and_prepare(source, keep_frame: bool):
    """In a worker: `prepared_item` or the file's `ImageError`; the milliseconds it took; the
    seconds of each stage."""
    path, data = source if isinstance(source, tuple) else (Path(source), None)
    started = time.perf_counter()
    stages = {}
    try:
        gray, original = read_frames(read_bytes(path) if data is None else data, None, path)
        stages["decode"] = time.perf_counter() - started
        item = prepared_item(gray, original, _SETTINGS["settings"], path, keep_frame)
        stages["preprocess"] = time.perf_counter() - started - stages["decode"]
    except ImageError as exc:
        item = exc
    except Exception as exc:
        item = failure(path, exc)
    return item, (time.perf_counter() - started) * 1000, stages


class DecodeWorkerDied(RuntimeError):
    """A decoding worker ended while it held a file (killed, or crashed on it): its batch fails."""


class Pending:
    """One file handed to a worker; `result()` as the decoding threads' futures give it: (the
    prepared item or an `ImageError`, milliseconds). Raises `DecodeWorkerDied` if its worker died."""

    def __init__(self, path: Path):
        self.future: Future = Future()
        self.path = path  # named in the error when its worker dies

    def result(self):
        item, ms, stages = self.future.result()
        for stage, seconds in stages.items():
            STAGE_TIMES.add(stage, seconds)
        return item, ms

    def cancel(self) -> bool:
        return self.future.cancel()


class DecodeWorkers:
    """`workers` processes decoding and preparing frames with one pipeline's settings.

    Each worker has a pipe of its own and a thread here that hands it one file at a time from a
    shared queue and waits for its answer (the wait releases the lock): a worker that dies is
    seen as the end of its own pipe, never mistaken for another's half-written answer, and is
    started again for the next file."""

    def __init__(self, settings: tuple, workers: int, budget):
        self._settings = settings  # `prepared_item`'s
        # The process's pixel budget (`inference.DECODING`), held here for each file a worker
        # holds: no more frames decoded at once in the workers than in threads.
        self._budget = budget
        self._context = multiprocessing.get_context("spawn")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._feed, args=(self._start_worker(),), daemon=True,
                                          name=f"inspector-decode-feed_{i}") for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _start_worker(self):
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, self._settings), daemon=True,
                                        name="inspector-decode-worker")
        process.start()
        theirs.close()
        return process, mine

    def submit(self, source, keep_frame: bool) -> Pending:
        pending = Pending(Path(source[0] if isinstance(source, tuple) else source))
        self._jobs.put((pending, source, keep_frame))
        return pending

    def _feed(self, worker) -> None:
        process, connection = worker
        while True:
            job = self._jobs.get()
            if job is None:
                break
            pending, source, keep_frame = job
            if not pending.future.set_running_or_notify_cancel():
                continue
            if not process.is_alive():  # ended while idle: a new one takes this file
                process, connection = self._restart(process, connection)
            data = source[1] if isinstance(source, tuple) else None
            try:
                with self._budget.hold(declared_pixels(data) if data is not None else None):
                    try:
                        connection.send((source, keep_frame))
                    except OSError:
                        # Ended before it was handed the file (its end not yet seen by
                        # `is_alive`, another thread having reaped it): a new one takes it.
                        process, connection = self._restart(process, connection)
                        connection.send((source, keep_frame))
                    answer = connection.recv()
            except (EOFError, OSError) as exc:
                pending.future.set_exception(DecodeWorkerDied(
                    f"a decoding process ended while it held {pending.path.name} ({type(exc).__name__})"))
                process, connection = self._restart(process, connection)
            except Exception as exc:  # an answer that cannot be read: this file's batch fails, not the feeding
                pending.future.set_exception(exc)
            else:
                pending.future.set_result(answer)
        try:
            connection.send(None)
        except OSError:
            pass
        connection.close()
        process.join(10)
        if process.is_alive():
            process.kill()

    def _restart(self, process, connection):
        connection.close()
        process.join(5)
        log.warning("a decoding process ended (exit code %s); starting a new one", process.exitcode)
        return self._start_worker()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


def _serve(connection, settings) -> None:
    """A worker: files in, prepared frames out, until told to stop or its daemon is gone."""
    _start(settings)
    while True:
        try:
            job = connection.recv()
            if job is None:
                return
            connection.send(_decode_and_prepare(*job))
        except (EOFError, OSError):  # the daemon is gone (killed: its end reset or closed)
            return
