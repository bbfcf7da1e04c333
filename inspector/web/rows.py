"""The rows the pages show: the app's store, and one inspection by its id (404 when there is none)."""

from __future__ import annotations

from flask import abort, current_app

from ..store import Inspection, Store

MAX_ID = 2**31 - 1  # ids are 32-bit integers in every database


def store() -> Store:
    return current_app.config["STORE"]


def row_or_404(inspection_id: int) -> Inspection:
    row = store().get(inspection_id) if 0 < inspection_id <= MAX_ID else None
    if row is None:
        abort(404)
    return row
