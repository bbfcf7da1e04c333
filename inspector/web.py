"""`inspector serve`: a local web page for QA to review flagged parts.

Serves only files under the daemon's --out folder, escapes every name from disk (Jinja
autoescape), and checks a per-process token on every form post.
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, abort, redirect, render_template_string, request, send_file, url_for

from .errors import ConfigError
from .review import parse_since, review_state
from .store import Inspection, ModelRecord, Store, utcnow

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f3f4f6;color:#111}
header{background:#1f2937;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}header .title{font-size:1.1em;margin-right:1em}
main{padding:.5em 1.2em}h1{margin:.3em 0;font-size:1.6em}form.filters{display:flex;gap:.8em;align-items:end;flex-wrap:wrap;margin-bottom:1em}
label{font-size:.85em;color:#374151;display:flex;flex-direction:column;gap:.2em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:.8em}
.card{background:#fff;border-radius:8px;padding:.6em;border-top:5px solid #9ca3af;color:inherit;text-decoration:none}
.card.defect{border-top-color:#dc2626}.card.error{border-top-color:#f59e0b}
.card img{width:100%;aspect-ratio:1;object-fit:cover;border-radius:4px;background:#e5e7eb}
.name{font-weight:600;word-break:break-all;font-size:.9em}.meta{font-size:.8em;color:#4b5563}
.badge{display:inline-block;padding:.1em .5em;border-radius:999px;font-size:.75em;font-weight:700;color:#fff;background:#6b7280}
.badge.defect{background:#dc2626}.badge.ok{background:#16a34a}.badge.error{background:#d97706}
.badge.confirmed{background:#7f1d1d}.badge.dismissed{background:#065f46}.badge.unreviewed{background:#9ca3af}
.pictures{display:grid;grid-template-columns:repeat(3,minmax(0,250px));gap:1em}.pictures figure{margin:0;background:#fff;padding:.5em;border-radius:8px}
.pictures img{width:100%;image-rendering:pixelated}.panel{background:#fff;border-radius:8px;padding:1em;margin:1em 0}
.bar{height:14px;background:#e5e7eb;border-radius:7px;position:relative;margin:.5em 0 1.2em}
.bar .fill{height:100%;border-radius:7px;background:#16a34a}.bar .fill.defect{background:#dc2626}
.bar .thr{position:absolute;top:-4px;bottom:-4px;width:2px;background:#111}
button{padding:.5em 1em;border-radius:6px;border:0;font-weight:600;cursor:pointer}
button.confirm{background:#dc2626;color:#fff}button.dismiss{background:#16a34a;color:#fff}
textarea{width:100%}.decision{display:flex;gap:1em;align-items:end;flex-wrap:wrap}.decision .note{flex:1;min-width:16em}
.panel h2{margin:.1em 0 .5em;font-size:1.1em}table{border-collapse:collapse;background:#fff}
td,th{padding:.3em .8em;border-bottom:1px solid #e5e7eb;text-align:right}th:first-child,td:first-child{text-align:left}
"""

LAYOUT = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }} - inspector</title>
<style>{{ style }}</style></head><body><header><span class="title">inspector QA</span>
<a href="{{ url_for('inspections') }}">Inspections</a>
<a href="{{ url_for('inspections', verdict='defect', review='unreviewed') }}">To review</a>
<a href="{{ url_for('summary') }}">Summary</a></header>
<main>{{ body|safe }}</main></body></html>"""

LIST = """
<h1>Inspections</h1>
<form class="filters" method="get">
  <label>Verdict<select name="verdict" id="verdict">
    {% for v in ['', 'defect', 'ok', 'error'] %}<option value="{{ v }}" {{ 'selected' if v == verdict }}>{{ v or 'all' }}</option>{% endfor %}
  </select></label>
  <label>Review<select name="review" id="review">
    {% for v in ['', 'unreviewed', 'confirmed', 'dismissed'] %}<option value="{{ v }}" {{ 'selected' if v == review }}>{{ v or 'all' }}</option>{% endfor %}
  </select></label>
  <label>Since (date or 12h / 7d)<input name="since" value="{{ since }}" size="12"></label>
  <button type="submit">Filter</button>
</form>
<p class="meta">{{ rows|length }} inspections{{ ' (first ' ~ limit ~ ')' if rows|length == limit }}, newest first.</p>
<div class="grid">
{% for r in rows %}
  <a class="card {{ r.verdict }}" href="{{ url_for('inspection', inspection_id=r.id) }}" data-id="{{ r.id }}">
    {% if files.get(r.id) %}<img src="{{ files[r.id] }}" alt="overlay">{% else %}<img alt="no overlay">{% endif %}
    <div class="name">#{{ r.id }} {{ r.source_name }}</div>
    <div><span class="badge {{ r.verdict }}">{{ r.verdict or r.status }}</span>
         <span class="badge {{ states[r.id] }}">{{ states[r.id] }}</span></div>
    <div class="meta">{% if r.score is not none %}score {{ '%.4g'|format(r.score) }} / threshold {{ '%.4g'|format(r.threshold) }}{% else %}{{ r.error_reason }}{% endif %}</div>
    <div class="meta">{{ r.received_at.strftime('%Y-%m-%d %H:%M:%S') }} UTC{{ ' · ' ~ r.station if r.station }}</div>
  </a>
{% else %}<p>No inspections match.</p>{% endfor %}
</div>"""

PART = """
<p><a href="{{ url_for('inspections') }}">&larr; all inspections</a></p>
<h1>#{{ r.id }} {{ r.source_name }} <span class="badge {{ r.verdict }}">{{ r.verdict or r.status }}</span>
<span class="badge {{ state }}" id="state">{{ state }}</span></h1>
{% if r.score is not none %}
<div class="panel"><b>Score {{ '%.5g'|format(r.score) }}</b> against threshold {{ '%.5g'|format(r.threshold) }}
  ({{ '%.0f'|format(100 * r.score / r.threshold) if r.threshold else '-' }}% of it)
  <div class="bar"><div class="fill {{ r.verdict }}" style="width:{{ fill }}%"></div><div class="thr" style="left:{{ thr }}%"></div></div>
  <span class="meta">Model: {{ model.name if model else 'unknown' }} {{ '(' ~ model.fingerprint ~ ', loaded ' ~ model.loaded_at.strftime('%Y-%m-%d %H:%M') ~ ')' if model }}
  · station {{ r.station or '-' }} · received {{ r.received_at.strftime('%Y-%m-%d %H:%M:%S') }} UTC
  · {{ '%.0f'|format(r.processing_ms or 0) }} ms</span></div>
{% else %}<div class="panel">Error: {{ r.error_reason }}</div>{% endif %}
<div class="pictures">
  {% for caption, src in pictures %}<figure>{% if src %}<img src="{{ src }}" alt="{{ caption }}">{% else %}<p class="meta">not available</p>{% endif %}
  <figcaption>{{ caption }}</figcaption></figure>{% endfor %}
</div>
<div class="panel"><h2>QA decision</h2>
  {% if next_id %}<p class="meta"><a id="next" href="{{ url_for('inspection', inspection_id=next_id) }}">Next flagged part to review &rarr;</a></p>{% endif %}
  <form method="post" action="{{ url_for('add_review', inspection_id=r.id) }}">
    <input type="hidden" name="token" value="{{ token }}">
    <div class="decision">
    <label>Reviewer<input name="reviewer" id="reviewer" value="{{ reviewer }}" size="12"></label>
    <label class="note">Note<textarea name="note" id="note" rows="2"></textarea></label>
    <button class="confirm" id="confirm" name="label" value="defect">Confirm defect</button>
    <button class="dismiss" id="dismiss" name="label" value="ok">False alarm</button></div>
  </form>
  {% if r.reviews %}<h3>History</h3><ul id="reviews">{% for v in r.reviews %}
    <li>{{ v.created_at.strftime('%Y-%m-%d %H:%M') }} UTC: <b>{{ 'confirmed defect' if v.label == 'defect' else 'false alarm' }}</b>
    by {{ v.reviewer or 'unknown' }}{{ ': ' ~ v.note if v.note }}</li>{% endfor %}</ul>{% endif %}
</div>"""

SUMMARY = """
<h1>Summary</h1>
<div class="panel">Last {{ days }} days: <b>{{ total }}</b> parts judged, <b>{{ defects }}</b> flagged
 (defect rate {{ '%.1f'|format(rate) }}%), {{ errors }} errors; QA confirmed {{ confirmed }}, dismissed {{ dismissed }}.</div>
<div class="panel"><h2>Score histogram, last {{ days }} days</h2>
  <img src="{{ url_for('histogram', days=days) }}" alt="score histogram with the threshold" width="700"></div>
<div class="panel" style="display:flex;gap:2em;flex-wrap:wrap">
<div><h2>Per day</h2><table><tr><th>day</th><th>parts</th><th>defects</th><th>errors</th><th>rate</th></tr>
{% for key, c in per_day %}<tr><td>{{ key }}</td><td>{{ c[0] }}</td><td>{{ c[1] }}</td><td>{{ c[2] }}</td><td>{{ '%.1f'|format(100 * c[1] / c[0]) }}%</td></tr>{% endfor %}</table></div>
<div><h2>Per hour, last 24 h</h2><table><tr><th>hour (UTC)</th><th>parts</th><th>defects</th><th>errors</th><th>rate</th></tr>
{% for key, c in per_hour %}<tr><td>{{ key }}</td><td>{{ c[0] }}</td><td>{{ c[1] }}</td><td>{{ c[2] }}</td><td>{{ '%.1f'|format(100 * c[1] / c[0]) }}%</td></tr>{% endfor %}</table></div>
</div>"""


def create_app(db: str, out: str | Path) -> Flask:
    app = Flask("inspector")
    store = Store(db)
    out_root = Path(out).resolve()
    token = secrets.token_urlsafe(16)
    app.config["STORE"] = store

    def page(title: str, template: str, **context) -> str:
        body = render_template_string(template, **context)
        return render_template_string(LAYOUT, title=title, style=STYLE, body=body)

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
        return page("Inspections", LIST, rows=rows, verdict=verdict, review=review, since=since_text, limit=limit,
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
        return page(f"#{row.id}", PART, r=row, model=model, state=review_state(row), token=token,
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
        return page("Summary", SUMMARY, days=days, total=len(rows), defects=defects,
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
