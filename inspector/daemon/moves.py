"""Files leaving the inbox: verified moves and copies that know whether they moved the file.

A move is a hard link then an unlink (or, across filesystems, a copy checked against the hash
the file was judged by); a crash at any point leaves either the file in the inbox or a target
that already holds it, and asking again finishes the move.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from ..digest import file_sha256
from ..names import printable
from .intake import Stamp, stamp_of

log = logging.getLogger("inspector.intake")


# What became of a file asked to leave the inbox.
MOVED = "moved"  # it is at the target
GONE = "gone"  # there was no file to move: moved already (a restart, another worker), or renamed or
# deleted by another program; the caller decides whether the target holds what it should
STAYED = "stayed"  # it is still in the inbox (written again, or the move failed: tried again later)


def move_out(source: Path, target: Path, digest: str | None = None, stamp: Stamp | None = None) -> str:
    """Move a file (or a symlink itself, never its target) out of the inbox: MOVED, GONE or STAYED.

    Idempotent and verified. A target that already holds the file (the same inode, after a crash
    between link and unlink; or a complete copy) only has the source unlinked; a stale or
    truncated target is replaced. Across filesystems the file is copied under a temporary name,
    synced, its size and SHA-256 checked against the source and `digest` (the hash it was judged
    by), then renamed into place, and only then is the source unlinked. A full disk (or any other
    failure) leaves the source in the inbox and no partial copy: it is tried again. With
    `stamp`, a source written again since it was read is left in the inbox, to be judged again.

    A hard link then an unlink, rather than a rename: watchdog holds back every event for
    0.5 s behind a rename out of the folder, which would delay the next verdicts.
    """
    try:
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            return GONE
        if stamp is not None and stamp_of(st)[:3] != stamp[:3]:
            log.warning("%s was written again after it was read; left in the inbox to be judged again",
                        printable(str(source)))
            return STAYED
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _holds(target, source, st, digest):
            try:
                _link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                _copy(source, target, st, digest)  # another filesystem
        os.unlink(source)
        return MOVED
    except FileNotFoundError:
        return GONE  # moved, renamed or deleted meanwhile
    except OSError as exc:
        log.error("cannot move %s to %s: %s; it stays in the inbox and is tried again",
                  printable(str(source)), target, exc.strerror or exc)
        return STAYED


def copy_out(source: Path, target: Path, digest: str | None = None) -> bool:
    """Copy a file out of the inbox (verified, as `move_out` does), leaving it where it is."""
    try:
        st = os.lstat(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _holds(target, source, st, digest):
            _copy(source, target, st, digest)
        return True
    except OSError as exc:
        log.error("cannot copy %s to %s: %s; tried again", printable(str(source)), target,
                  exc.strerror or exc)
        return False


def write_out(data: bytes, target: Path, digest: str) -> bool:
    """Write the bytes a file was judged by to `target` (a temporary name, synced, renamed into
    place), for a file that left the inbox before it could be moved; true once written."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError("the bytes do not match the hash they were judged by")
    tmp = _temporary(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return True
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        log.error("cannot write %s: %s", target, exc.strerror or exc)
        return False


def _holds(target: Path, source: Path, st: os.stat_result, digest: str | None) -> bool:
    """Whether `target` already is the file at `source`: the same inode, the same symlink, or a
    regular file of the same size and content (`digest`, or the source's own hash)."""
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        return False
    if os.path.samestat(existing, st):
        return True
    if stat.S_ISLNK(existing.st_mode) and stat.S_ISLNK(st.st_mode):
        return os.readlink(target) == os.readlink(source)
    if not (stat.S_ISREG(existing.st_mode) and stat.S_ISREG(st.st_mode)) or existing.st_size != st.st_size:
        return False
    return file_sha256(target, follow_symlinks=False) == (digest or file_sha256(source, follow_symlinks=False))


def _temporary(target: Path) -> Path:
    return target.parent / f".{secrets.token_hex(8)}.tmp"


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:  # a stale or truncated copy from an earlier attempt: replace it
        tmp = _temporary(target)
        os.link(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)


def _copy(source: Path, target: Path, st: os.stat_result, digest: str | None) -> None:
    """Copy to a temporary name, check it, rename it into place; nothing is left on failure."""
    tmp = _temporary(target)
    try:
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), tmp)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(tmp)
        elif stat.S_ISREG(st.st_mode):
            read = hashlib.sha256()
            with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as src, \
                    open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    read.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            size = os.stat(tmp).st_size
            if (size != st.st_size or (digest and read.hexdigest() != digest)
                    or file_sha256(tmp, follow_symlinks=False) != read.hexdigest()):
                raise OSError(errno.EIO, f"the copy does not match the file judged ({size} of {st.st_size} bytes)")
        else:  # a socket or a device: nothing to copy
            return
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

