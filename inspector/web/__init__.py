"""`inspector serve`: a local web page for QA to review flagged parts.

The app is a factory (`create_app`) registering blueprints: `parts` (the list, one part, the
label form), `pictures` (the files the database names, under --out only) and `summary`;
`security` guards every request (its docstring lists the defences, each against a page a
hostile site or a hostile file could make a browser load). The pages are the templates in
inspector/templates/.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask

from ..store import Store
from . import parts, pictures, security, summary
from .security import is_loopback

__all__ = ["create_app", "is_loopback"]

log = logging.getLogger("inspector.serve")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def create_app(db: str, out: str | Path, host: str = "127.0.0.1", allowed_hosts: list[str] | tuple[str, ...] = (),
               password: str | None = None) -> Flask:
    """The QA page on the database `db`, serving only pictures under `out`, answering to `host`
    (and `allowed_hosts`), asking for `password` if given. `app.config["STORE"]` is the store it
    opened: close it when the app is done. Pictures the database names but `out` does not hold
    are a WARNING and a notice on every page."""
    app = Flask("inspector", template_folder=str(TEMPLATES))
    store = app.config["STORE"] = Store(db, must_exist=True)
    app.config["OUT"] = Path(out).resolve()
    app.config["FORM_TOKEN"] = secrets.token_urlsafe(16)
    # Checked once, at start: every page says so, and the log names the folders.
    try:
        notice = app.config["PICTURES_NOTICE"] = pictures.pictures_notice(store, app.config["OUT"])
    except BaseException:
        store.close()
        raise
    if notice:
        log.warning("%s", notice)
    app.context_processor(lambda: {"pictures_notice": app.config["PICTURES_NOTICE"]})
    security.install(app, security.host_names(host, allowed_hosts), password)
    for blueprint in (parts.blueprint, pictures.blueprint, summary.blueprint):
        app.register_blueprint(blueprint)
    return app
