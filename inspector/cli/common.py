"""What every command shares: logging and --json options, progress bars, the database through the
click context, errors as one-line messages."""

from __future__ import annotations

import functools
import getpass
import json
import logging
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import click

from .. import logs
from ..errors import InspectorError

log = logging.getLogger("inspector")


def logging_options(level: int = logging.WARNING, verbose_help: str | None = None):
    """-v and --log-format; logging (`inspector.logs`) is set up before the command runs.
    `level`: what the command logs without -v (the daemons report routine lines at INFO);
    `verbose_help`: what -v adds, when the command has more to say than its level."""
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, verbose, log_format, **kwargs):
            logs.setup(verbose, log_format, level)
            if log_format != "json":
                return f(*args, **kwargs)
            with logs.native_messages():  # one JSON object per line, libraries' own stderr lines too
                return f(*args, **kwargs)

        wrapper = click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True,
                               help="Log lines on stderr as plain text or one JSON object per line.")(wrapper)
        more = verbose_help or ("Debug log lines too." if level == logging.INFO else "More log output (-vv for debug).")
        return click.option("-v", "--verbose", count=True, help=more)(wrapper)

    return decorate


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def progress_bar(length: int, label: str, quiet: bool = False, **options):
    """A progress bar on stderr when it is a terminal, a log line at each tenth done when it is
    not (a pipe, a file, the journal); nothing when `quiet` (--json)."""
    if quiet:
        return nullcontext(SimpleNamespace(update=lambda *args: None))
    if not sys.stderr.isatty():
        return nullcontext(TenthLines(length, label, options.get("item_show_func")))
    return click.progressbar(length=length, label=label, file=sys.stderr, **options)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60} s"


class TenthLines:
    """Long work where no bar can be drawn: an INFO line (shown at any --verbose) each time
    another tenth is done, `Training compact: 30% (3/10), loss 0.02, 4 s so far, about 9 s left`;
    minutes of silence would look like a hang."""

    def __init__(self, length: int, label: str, show=None):
        self.length, self.label, self.show = length, label, show
        self.done = self.tenths = 0
        self.started = time.monotonic()

    def update(self, steps: int, current=None) -> None:
        self.done += steps
        tenths = min(10, self.done * 10 // self.length) if self.length > 0 else 0
        if tenths <= self.tenths:
            return
        self.tenths = tenths
        elapsed = time.monotonic() - self.started
        parts = [f"{self.label}: {100 * self.done // self.length}% ({self.done}/{self.length})"]
        shown = self.show(current) if self.show is not None and current is not None else None
        if shown:
            parts.append(str(shown))
        parts.append(f"{_duration(elapsed)} so far")
        if self.done < self.length:
            parts.append(f"about {_duration(elapsed * (self.length - self.done) / self.done)} left")
        logging.getLogger(logs.PROGRESS).info("%s", ", ".join(parts))


def db_option(f):
    return click.option("--db", envvar="INSPECTOR_DB", default="inspector.db", show_default=True,
                        help="SQLite file or SQLAlchemy URL [env: INSPECTOR_DB].")(f)


def progress_for(quiet: bool):
    """A `usecases.progress.Progress` that shows bars on a terminal, none with --json (`quiet`)."""
    return functools.partial(progress_bar, quiet=quiet)


def warn(message: str) -> None:
    """A use case's warning, on stderr."""
    click.echo(f"warning: {message}", err=True)


def open_store(db: str, create: bool = False):
    """The database, closed when the command ends (through the click context); only `watch`
    creates a missing SQLite file, the other commands say it is missing."""
    from ..store import Store

    store = Store(db, must_exist=not create)
    click.get_current_context().call_on_close(store.close)
    return store


def fail_cleanly(func):
    """Turn the errors the package raises on purpose into one-line click errors (exit code 1);
    anything else is a bug and keeps its traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InspectorError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def emit(data, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=float) if as_json else text)


def user_name() -> str:
    """The login name (LOGNAME, USER, ... then the password database), "unknown" if there is none."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):
        return "unknown"


def load(model_dir: Path):
    from ..bundle import load_bundle

    return load_bundle(model_dir)


def confusion_lines(stats) -> list[str]:
    return [
        "                 judged defect  judged ok",
        f"  defect parts   {stats.true_positive:13d}  {stats.false_negative:9d}",
        f"  good parts     {stats.false_positive:13d}  {stats.true_negative:9d}",
    ]


def failures_exit_with(code: int):
    """Make every failure of a command exit with `code`: a clear error, Ctrl-C, or a bug (its
    traceback printed), for commands whose exit codes 0 and 1 carry a result."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except click.exceptions.Exit:
                raise
            except click.ClickException as exc:
                exc.exit_code = code
                raise
            except (click.Abort, KeyboardInterrupt):
                click.echo("Aborted!", err=True)
            except Exception:
                traceback.print_exc()
            raise click.exceptions.Exit(code)

        return wrapper

    return decorate
