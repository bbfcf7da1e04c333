"""`inspector serve`: a local web page for QA to review flagged parts.

Serves only files under the daemon's --out folder, escapes every name from disk (Jinja
autoescape), and checks a per-process token on every form post. The pages are the templates in
inspector/templates/.
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, abort, redirect, render_template, request, send_file, url_for

from .errors import ConfigError
from .review import parse_since, review_state
from .store import Inspection, ModelRecord, Store, utcnow


def create_app(db: str, out: str | Path) -> Flask:
    app = Flask("inspector")
    store = Store(db, must_exist=True)
    out_root = Path(out).resolve()
    token = secrets.token_urlsafe(16)
    app.config["STORE"] = store

    def file_url(path: str | None) -> str | None:
        """A URL for a file under --out; None for anything outside it (never served)."""
        if not path:
            return None
        try:
            relative = Path(path).resolve().relative_to(out_root)
        except (ValueError, OSError):
            return None
        return url_for("files", relative=relative.as_posix())

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
                    files={r.id: file_url(r.overlay_path) for r in rows},
                    states={r.id: review_state(r) for r in rows})

    @app.get("/inspections/<int:inspection_id>")
    def inspection(inspection_id: int):
        row = store.get(inspection_id)
        if row is None:
            abort(404)
        with store.session() as s:
            model = s.get(ModelRecord, row.model_id) if row.model_id else None
        scale = max(row.score or 0, row.threshold or 0) * 1.25 or 1
        waiting = [r.id for r in store.inspections(flagged=True, reviewed=False, limit=50) if r.id != row.id]
        return render_template("inspection.html", title=f"#{row.id}", r=row, model=model, state=review_state(row), token=token,
                    next_id=waiting[0] if waiting else None,
                    reviewer=request.cookies.get("reviewer", ""),
                    fill=min(100, 100 * (row.score or 0) / scale), thr=100 * (row.threshold or 0) / scale,
                    pictures=[("input", file_url(row.stored_path)), ("heatmap", file_url(row.heatmap_path)),
                              ("overlay", file_url(row.overlay_path))])

    @app.post("/inspections/<int:inspection_id>/review")
    def add_review(inspection_id: int):
        if not secrets.compare_digest(request.form.get("token", ""), token):
            abort(403, "stale or missing form token: reload the page")
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
        days = request.args.get("days", 7, type=int)
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
        return render_template("summary.html", title="Summary", days=days, total=len(rows), defects=defects,
                    errors=sum(r.verdict == "error" for r in rows), rate=100 * defects / len(rows) if rows else 0.0,
                    confirmed=states.count("confirmed"), dismissed=states.count("dismissed"),
                    per_day=sorted(per_day.items(), reverse=True), per_hour=sorted(per_hour.items(), reverse=True))

    @app.get("/summary/histogram.png")
    def histogram():
        import numpy as np

        from .plots import score_histogram

        rows = [r for r in recent(request.args.get("days", 7, type=int)) if r.score is not None]
        ok = np.array([r.score for r in rows if r.verdict == "ok"])
        flagged = np.array([r.score for r in rows if r.verdict == "defect"])
        threshold = rows[0].threshold if rows else 0.0  # newest first: the threshold in force now
        buffer = io.BytesIO()
        score_histogram(buffer, ok, flagged, threshold, "recent parts", labels=("passed", "flagged"))
        return Response(buffer.getvalue(), mimetype="image/png")

    @app.get("/files/<path:relative>")
    def files(relative: str):
        target = (out_root / relative).resolve()
        try:
            target.relative_to(out_root)
        except ValueError:
            abort(403)  # outside --out, e.g. ../../etc/passwd, or a symlink leading out
        if not target.is_file():
            abort(404)
        return send_file(target)

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
        return response

    return app
