"""`inspector serve`: a local web page for QA to review flagged parts.

Defences, each against a page a hostile site or a hostile file could make a browser load:
- The Host header must name this server (the address it is bound to, loopback names, `--host`
  and `--allow-host` names; any IP address, which cannot be rebound): DNS rebinding is refused.
- Form posts carry a per-process token, and their Origin (or Referer) must be this page.
- Pictures are served by inspection and kind (input, heatmap, overlay): only files the database
  points to, under --out, and only as images (by their content); anything else is an attachment.
- Frames are refused (X-Frame-Options, CSP frame-ancestors); names are escaped (Jinja).
- With a password (`--password` / INSPECTOR_SERVE_PASSWORD), every request needs it (HTTP basic
  authentication, any user name).
- Parameters out of range are 400, ids that cannot exist 404.
The pages are the templates in inspector/templates/.
"""

from __future__ import annotations

import io
import ipaddress
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, abort, redirect, render_template, request, send_file, url_for

from .errors import ConfigError
from .drift import summary as drift_summary
from .formats import media_type
from .review import parse_since, review_state, station_stats
from .store import Inspection, ModelRecord, Store, utcnow

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PICTURES = {"input": "stored_path", "overlay": "overlay_path", "upright": "crop_overlay_path",
            "heatmap": "heatmap_path"}
MAX_ID = 2**31 - 1  # ids are 32-bit integers in every database
MAX_DAYS = 3660
PAGE_POLICY = ("default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; "
               "base-uri 'none'")
FILE_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def host_names(host: str, allowed: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The names a request's Host header may carry for a server bound to `host`."""
    names = {host.lower(), *(name.lower().rstrip(".") for name in allowed), *LOOPBACK_NAMES}
    if is_wildcard(host):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return {name for name in names if name}


def _host_of(header: str) -> str:
    """The host part of a Host header or URL netloc ('[::1]:8765' -> '::1'), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _image_type(path: Path) -> str | None:
    """What a picture is served as, by its first bytes (the signatures of the formats table);
    None: not an image, so not served as one."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return media_type(head)


def create_app(db: str, out: str | Path, host: str = "127.0.0.1", allowed_hosts: list[str] | tuple[str, ...] = (),
               password: str | None = None) -> Flask:
    app = Flask("inspector")
    store = Store(db, must_exist=True)
    out_root = Path(out).resolve()
    token = secrets.token_urlsafe(16)
    names = host_names(host, allowed_hosts)
    app.config["STORE"] = store

    def under_out(stored: str | None) -> Path | None:
        """The file a row names, if it lies under --out (resolved: no `..`, no symlink leading out)."""
        if not stored:
            return None
        try:
            target = Path(stored).resolve()
            target.relative_to(out_root)
        except (ValueError, OSError):
            return None
        return target

    def picture_url(row: Inspection, kind: str) -> str | None:
        if under_out(getattr(row, PICTURES[kind])) is None:
            return None
        return url_for("picture", inspection_id=row.id, kind=kind)

    def row_or_404(inspection_id: int) -> Inspection:
        row = store.get(inspection_id) if 0 < inspection_id <= MAX_ID else None
        if row is None:
            abort(404)
        return row

    def days_argument() -> int:
        days = request.args.get("days", 7, type=int)
        if not 1 <= days <= MAX_DAYS:
            abort(400, f"days must be between 1 and {MAX_DAYS}")
        return days

    @app.before_request
    def guard():
        host_header = _host_of(request.headers.get("Host", ""))
        if host_header not in names and not _is_ip(host_header):
            abort(400, "this page does not answer to that host name (start `inspector serve` with "
                       "--host or --allow-host NAME to allow it)")
        if password is not None:
            auth = request.authorization
            given = auth.password if auth is not None and auth.type == "basic" else None
            if not given or not secrets.compare_digest(given.encode(), password.encode()):
                return Response("password required\n", 401, {"WWW-Authenticate": 'Basic realm="inspector QA"'})
        if request.method == "POST":
            source = request.headers.get("Origin") or request.headers.get("Referer")
            if source is not None and urlsplit(source).netloc.lower() != request.headers.get("Host", "").lower():
                abort(403, "a form post from another site is refused")

    @app.get("/")
    def inspections():
        verdict = request.args.get("verdict", "")
        review = request.args.get("review", "")
        since_text = request.args.get("since", "")
        try:
            since = parse_since(since_text)
        except ConfigError as exc:
            abort(400, str(exc))
        limit = 200
        rows = store.inspections(verdict=verdict or None, since=since,
                                 reviewed=None if not review else review != "unreviewed", limit=None if review else limit)
        if review in ("confirmed", "dismissed"):
            rows = [r for r in rows if review_state(r) == review]
        rows = rows[:limit]
        return render_template("inspections.html", title="Inspections", rows=rows, verdict=verdict, review=review, since=since_text, limit=limit,
                    files={r.id: picture_url(r, "overlay") for r in rows},
                    states={r.id: review_state(r) for r in rows})

    @app.get("/inspections/<int:inspection_id>")
    def inspection(inspection_id: int):
        row = row_or_404(inspection_id)
        with store.session() as s:
            model = s.get(ModelRecord, row.model_id) if row.model_id else None
        scale = max(row.score or 0, row.threshold or 0) * 1.25 or 1
        waiting = [r.id for r in store.inspections(flagged=True, reviewed=False, limit=50) if r.id != row.id]
        return render_template("inspection.html", title=f"#{row.id}", r=row, model=model, state=review_state(row), token=token,
                    next_id=waiting[0] if waiting else None,
                    reviewer=request.cookies.get("reviewer", ""),
                    fill=min(100, 100 * (row.score or 0) / scale), thr=100 * (row.threshold or 0) / scale,
                    pictures=[(kind, picture_url(row, kind)) for kind in PICTURES])

    @app.post("/inspections/<int:inspection_id>/review")
    def add_review(inspection_id: int):
        if not secrets.compare_digest(request.form.get("token", ""), token):
            abort(403, "stale or missing form token: reload the page")
        if not 0 < inspection_id <= MAX_ID:
            abort(404)
        label = request.form.get("label", "")
        reviewer = request.form.get("reviewer", "")[:200]
        try:
            store.add_review(inspection_id, label, reviewer=reviewer, note=request.form.get("note", "")[:2000])
        except LookupError:
            abort(404)
        except ValueError as exc:
            abort(400, str(exc))
        response = redirect(url_for("inspection", inspection_id=inspection_id), code=303)
        response.set_cookie("reviewer", reviewer, samesite="Strict", httponly=True)
        return response

    def recent(days: int) -> list[Inspection]:
        return [r for r in store.inspections(since=utcnow() - timedelta(days=days)) if r.status != "pending"]

    @app.get("/summary")
    def summary():
        days = days_argument()
        rows = recent(days)
        per_day: dict[str, list[int]] = {}
        per_hour: dict[str, list[int]] = {}
        day_ago = utcnow() - timedelta(hours=24)
        for r in rows:
            for key, table in ((r.received_at.strftime("%Y-%m-%d"), per_day),
                               (r.received_at.strftime("%Y-%m-%d %H:00"), per_hour if r.received_at >= day_ago else None)):
                if table is not None:
                    counts = table.setdefault(key, [0, 0, 0])
                    counts[0] += 1
                    counts[1] += r.verdict == "defect"
                    counts[2] += r.verdict == "error"
        defects = sum(r.verdict == "defect" for r in rows)
        states = [review_state(r) for r in rows]
        drift = [(r["station"], r["model"], r["drift"]) for r in station_stats(store, utcnow() - timedelta(days=days))]
        return render_template("summary.html", title="Summary", days=days, total=len(rows), defects=defects,
                    drift=drift, drift_summary=drift_summary,
                    errors=sum(r.verdict == "error" for r in rows), rate=100 * defects / len(rows) if rows else 0.0,
                    confirmed=states.count("confirmed"), dismissed=states.count("dismissed"),
                    per_day=sorted(per_day.items(), reverse=True), per_hour=sorted(per_hour.items(), reverse=True))

    @app.get("/summary/histogram.png")
    def histogram():
        import numpy as np

        from .plots import score_histogram

        rows = [r for r in recent(days_argument()) if r.score is not None]
        ok = np.array([r.score for r in rows if r.verdict == "ok"])
        flagged = np.array([r.score for r in rows if r.verdict == "defect"])
        threshold = rows[0].threshold if rows else 0.0  # newest first: the threshold in force now
        buffer = io.BytesIO()
        score_histogram(buffer, ok, flagged, threshold, "recent parts", labels=("passed", "flagged"))
        return Response(buffer.getvalue(), mimetype="image/png")

    @app.get("/summary/scores.png")
    def score_chart():
        """Scores over time with the threshold, each model's calibration band and the median of
        the last passed scores (what drift is judged on)."""
        from .drift import DEFAULT_WINDOW, reference_at
        from .errors import BundleError
        from .plots import score_timeline

        rows = sorted((r for r in recent(days_argument()) if r.score is not None and r.scored_at is not None),
                      key=lambda r: (r.scored_at, r.id))
        bands = {}
        for model_id in dict.fromkeys(r.model_id for r in rows if r.model_id is not None):
            with store.session() as s:
                model = s.get(ModelRecord, model_id)
            try:
                reference = reference_at(model.path, model.fingerprint)
            except BundleError:
                continue  # its bundle is gone or holds another model now: no band
            bands[model_id] = (reference.low, reference.high)
        buffer = io.BytesIO()
        score_timeline(buffer, [r.scored_at for r in rows], [r.score for r in rows],
                       [r.verdict == "defect" for r in rows], [r.threshold for r in rows], [r.model_id for r in rows],
                       bands, DEFAULT_WINDOW, "scores over time (UTC)")
        return Response(buffer.getvalue(), mimetype="image/png")

    @app.get("/inspections/<int:inspection_id>/picture/<kind>")
    def picture(inspection_id: int, kind: str):
        """A picture of an inspection, as the database names it; only under --out (no `..`, no
        symlink leading out). An image by its content is shown; anything else (a script dropped
        into the inbox and rejected) is only downloadable."""
        if kind not in PICTURES:
            abort(404)
        target = under_out(getattr(row_or_404(inspection_id), PICTURES[kind]))
        try:
            if target is None or not target.is_file():
                abort(404)
            mimetype = _image_type(target)
        except OSError:
            abort(404)
        if mimetype is None:
            response = send_file(target, mimetype="application/octet-stream", as_attachment=True,
                                 download_name=target.name)
        else:
            response = send_file(target, mimetype=mimetype)
        response.headers["Content-Security-Policy"] = FILE_POLICY
        return response

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    return app
