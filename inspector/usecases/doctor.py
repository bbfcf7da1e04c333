"""`inspector doctor`: is this station ready to run `inspector watch`?

Each check is one line: OK, WARN (works, but look at it) or FAIL (the daemon would not run, or
would lose work). Nothing is created or changed, except a moment's test file in the inbox and
the out folder (a dot-file, which the daemon ignores).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
# Filesystems where inotify does not see files written by other machines: the daemon needs --polling.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "ceph", "glusterfs",
                       "fuse.glusterfs", "lustre", "afs", "davfs", "fuse.rclone")


@dataclass
class Check:
    name: str  # what was checked: model, database, inbox, out
    status: str  # OK, WARN or FAIL
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_station(inbox: Path | None, model: Path | None, db: str, out: Path, polling: bool = False,
                  min_free_bytes: int = 1 << 30, line: list[Check] | None = None) -> list[Check]:
    """Every check, in the order a line engineer fixes things. `line`: the line outputs'
    checks (`inspector.line.checks`), made by the caller."""
    database = check_database(db)
    checks = [check_model(model), database]
    if database.status == OK:
        checks.append(check_outbox(db))
    checks += check_folder("inbox", inbox, min_free_bytes, polling=polling)
    checks += check_folder("out", out, min_free_bytes, inbox=inbox)
    return checks + list(line or [])


def check_outbox(db: str) -> Check:
    """Verdicts the line outputs still owe: a backlog is said, never hidden."""
    from ..review.stats import outbox_backlog
    from ..store import Store

    store = Store(db, migrate_schema=False)
    try:
        backlog = outbox_backlog(store)
    finally:
        store.close()
    waiting = [f"{station or '-'} -> {e['output']}: {e['waiting']} waiting since {e['oldest']} UTC"
               for station, entries in backlog.items() for e in entries if e["waiting"]]
    if waiting:
        return Check("outbox", WARN, "; ".join(waiting))
    return Check("outbox", OK, "every verdict delivered to the line outputs")


def check_model(path: Path | None) -> Check:
    if path is None:
        return Check("model", FAIL, "no model bundle given (--model or INSPECTOR_MODEL)")
    from ..bundle import load_bundle

    try:
        bundle = load_bundle(path)
    except Exception as exc:  # BundleError above all; a doctor reports, it does not crash
        return Check("model", FAIL, str(exc))
    return Check("model", OK, f"{path}: pipeline {bundle.pipeline.name} ({bundle.pipeline.model.architecture}), "
                              f"threshold {bundle.threshold:.6g}, loads")


def check_database(db: str) -> Check:
    """Reachable, and its schema at this inspector's newest migration; a missing SQLite file is not created."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from ..store import MIGRATIONS, make_engine, normalize_url

    url = make_url(normalize_url(db))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if not path.exists():
            folder = path.parent if str(path.parent) else Path(".")
            if _writable(folder):
                return Check("database", WARN, f"{path} does not exist yet; `inspector watch` creates it")
            return Check("database", FAIL, f"{path} does not exist and {folder} is not writable")
        if not (os.access(path, os.R_OK | os.W_OK) and _writable(path.parent)):
            return Check("database", FAIL, f"{path} or its folder is not writable (SQLite also writes "
                                           f"{path.name}-wal and {path.name}-shm next to it)")
    scripts = ScriptDirectory(str(MIGRATIONS))
    head = scripts.get_current_head()
    engine = make_engine(str(url.render_as_string(hide_password=False)))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # OperationalError and the drivers' own: unreachable, refused, no such file
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())  # one line
        return Check("database", FAIL, f"{shown}: cannot connect: {reason}")
    finally:
        engine.dispose()
    if current == head:
        return Check("database", OK, f"{shown}: reachable, schema migrated (revision {head})")
    if current is None:
        return Check("database", WARN, f"{shown}: reachable, no inspector tables yet; `inspector watch` creates them")
    known = {script.revision for script in scripts.walk_revisions()}
    if current in known:
        return Check("database", WARN, f"{shown}: schema at revision {current}, this inspector's is {head}; "
                                       "`inspector watch` migrates it when it starts")
    return Check("database", FAIL, f"{shown}: schema at revision {current}, unknown to this inspector "
                                   f"(newest {head}): was it migrated by a newer one?")


def check_folder(name: str, path: Path | None, min_free_bytes: int, polling: bool = False,
                 inbox: Path | None = None) -> list[Check]:
    """The inbox (must exist) or the out folder (created by the daemon): writable, its filesystem,
    free space."""
    if path is None:
        return [Check(name, FAIL, f"no {name} folder given")]
    path = Path(path)
    if inbox is not None and (Path(os.path.abspath(path)) == Path(os.path.abspath(inbox))
                              or Path(os.path.abspath(inbox)) in Path(os.path.abspath(path)).parents):
        return [Check(name, FAIL, f"{path} is inside the inbox {inbox}")]
    existing, note = path, ""
    if not path.exists():
        if name == "inbox":
            return [Check(name, FAIL, f"{path} does not exist")]
        existing = next(p for p in Path(os.path.abspath(path)).parents if p.exists())
        note = f" (does not exist yet; the daemon creates it in {existing})"
    if not existing.is_dir():
        return [Check(name, FAIL, f"{existing} is not a folder")]
    if not _writable(existing):
        return [Check(name, FAIL, f"{existing} is not writable by this user"
                                  + (" (the daemon moves files out of it)" if name == "inbox" else ""))]
    kind, mount = filesystem(existing)
    checks = [Check(name, OK, f"{path}: writable{note}, on {kind} mounted at {mount}")]
    if name == "inbox" and kind in NETWORK_FILESYSTEMS and not polling:
        checks.append(Check(name, WARN, f"{path} is on a network filesystem ({kind}): files written by other "
                                        "machines raise no events here; use --polling"))
    usage = shutil.disk_usage(existing)
    space = f"{_gigabytes(usage.free)} free of {_gigabytes(usage.total)} on {mount}"
    if usage.free < min_free_bytes:
        checks.append(Check(name, FAIL, f"{space}, below the {_gigabytes(min_free_bytes)} asked for"))
    else:
        checks.append(Check(name, OK, space))
    return checks


def filesystem(path: Path) -> tuple[str, str]:
    """(type, mount point) of the filesystem holding `path`, from /proc/self/mounts; ("unknown", "?")
    where that cannot be read."""
    target = os.path.realpath(path)
    best, best_length = ("unknown", "?"), -1
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= best_length:  # the innermost (a later mount over it wins)
                    best, best_length = (fields[2], mount), len(mount)
    except OSError:
        pass
    return best


def _writable(folder: Path) -> bool:
    """Whether a file can really be made in `folder` (permissions, read-only mounts, ACLs)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".inspector-doctor-"):
            return True
    except OSError:
        return False


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"
