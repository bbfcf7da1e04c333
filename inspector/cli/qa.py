"""QA's commands: review (list, show, label, kinds), report, serve, stats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from .common import db_option, fail_cleanly, json_option, logging_options, open_store, user_name
from .station import drift_options

log = logging.getLogger("inspector")


@click.group()
def review():
    """QA review of inspections: list, show, label; the defect kinds QA picks from.

    \b
    Examples:
      inspector review list --flagged --since 12h
      inspector review show 42
      inspector review label 42 ok --note "dust on the lens"
      inspector review label 43 defect --kind thread
      inspector review kinds line1 "scratch on the head" thread tip neck other
    """


@review.command("list")
@db_option
@click.option("--flagged", is_flag=True, help="Only parts judged defective.")
@click.option("--verdict", type=click.Choice(["ok", "defect", "error"]), help="Only this verdict.")
@click.option("--unreviewed", is_flag=True, help="Only parts without a review.")
@click.option("--since", help="Received since a date (2026-11-23) or a span back from now (30m, 12h, 7d).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True,
              help="At most this many inspections, the newest.")
@logging_options()
@json_option
@fail_cleanly
def review_list(db, flagged, verdict, unreviewed, since, limit, as_json):
    """List inspections, newest first.

    \b
    Examples:
      inspector review list --flagged --since 7d
      inspector review list --verdict error --json
    """
    from ..review import as_dict, parse_since
    from ..review.text import table

    store = open_store(db)
    rows = store.inspections(flagged=flagged, verdict=verdict, since=parse_since(since),
                             reviewed=False if unreviewed else None, limit=limit)
    if as_json:
        click.echo(json.dumps([as_dict(r) for r in rows], indent=2))
    else:
        click.echo(table(rows) if rows else "no inspections match")


@review.command("show")
@click.argument("inspection_id", type=int)
@db_option
@logging_options()
@json_option
@fail_cleanly
def review_show(inspection_id, db, as_json):
    """Show one inspection: image, heatmap and overlay paths, score, threshold, its hot regions
    (box, area, peak and mean heat, in the photo's pixels), reviews.

    \b
    Example:
      inspector review show 42
    """
    from ..review import as_dict, region_text

    store = open_store(db)
    row = store.get(inspection_id)
    if row is None:
        raise click.ClickException(f"no inspection with id {inspection_id}")
    data = as_dict(row)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("id", "source_name", "status", "verdict", "score", "threshold", "error_reason", "stored_path",
                "heatmap_path", "overlay_path", "crop_overlay_path", "received_at", "scored_at", "review", "kind"):
        if data[key] is not None:
            click.echo(f"{key:14} {data[key]}")
    for region in data["regions"] or []:
        click.echo(f"{'hot region':14} {region_text(region)}")
    for r in data["reviews"]:
        kind = f" ({r['kind']})" if r["kind"] else ""
        click.echo(f"{'reviewed':14} {r['created_at']} {r['label']}{kind} by {r['reviewer'] or 'unknown'}: {r['note']}")


@review.command("label")
@click.argument("inspection_id", type=int)
@click.argument("label", type=click.Choice(["defect", "ok"]))
@click.option("--note", default="", help="Why: what QA saw.")
@click.option("--kind", help="With defect: what kind of defect (any text; `review kinds STATION` lists the station's).")
@click.option("--reviewer", envvar="INSPECTOR_REVIEWER", default=lambda: user_name(),
              help="Who reviewed [env: INSPECTOR_REVIEWER; default: the login name, else \"unknown\"].")
@db_option
@logging_options()
@fail_cleanly
def review_label(inspection_id, label, note, kind, reviewer, db):
    """Record a QA decision: LABEL is defect (confirmed) or ok (false alarm).

    \b
    Examples:
      inspector review label 42 defect --kind thread --note "thread damaged"
      inspector review label 43 ok --note "dust, part is fine"
    """
    try:
        review = open_store(db).add_review(inspection_id, label, reviewer=reviewer, note=note, kind=kind)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"inspection {inspection_id} labelled {label}" + (f" ({review.kind})" if review.kind else ""))


@review.command("kinds")
@click.argument("station")
@click.argument("kinds", nargs=-1)
@click.option("--default", "to_default", is_flag=True, help="Forget the station's list: the default list again.")
@db_option
@logging_options()
@json_option
@fail_cleanly
def review_kinds(station, kinds, to_default, db, as_json):
    """Show or set the defect kinds QA picks from at STATION when confirming a defect.

    With KINDS, they become the station's list, in that order (at most 9: the QA page picks them
    with the keys 1-9); without, the list is shown. A station without a list of its own offers
    the default: scratch, dent, crack, deformed, contamination, other. The list is a choice
    offered, not a rule: a review may name another kind, or none.

    \b
    Examples:
      inspector review kinds line1 "scratch on the head" thread tip neck other
      inspector review kinds line1
      inspector review kinds line1 --default
    """
    if kinds and to_default:
        raise click.UsageError("give KINDS or --default, not both")
    store = open_store(db)
    if kinds or to_default:
        try:
            store.set_defect_kinds(station, list(kinds))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    own = store.defect_kinds(station, default=False)
    listed = own or store.defect_kinds(station)
    if as_json:
        click.echo(json.dumps({"station": station, "kinds": listed, "default": not own}, indent=2))
        return
    click.echo(f"defect kinds at {station}" + ("" if own else " (the default: the station has no list of its own)")
               + ":")
    for key, kind in enumerate(listed, 1):
        click.echo(f"  {key}  {kind}")


@click.command()
@db_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for index.html and its images.")
@click.option("--since", help="Received since a date or a span back from now (12h, 7d).")
@click.option("--all", "include_all", is_flag=True, help="Every inspection, not only flagged ones.")
@logging_options()
@json_option
@fail_cleanly
def report(db, out_dir, since, include_all, as_json):
    """Write a static HTML page of flagged parts with overlays, scores, review state and defect kind.

    With --json, the page's path and its parts (as `review show --json` gives them) on stdout.

    \b
    Examples:
      inspector report --out qa-report/
      inspector report --out today/ --since 24h
      inspector report --out today/ --json | jq '.parts[] | select(.kind == "thread") | .id'
    """
    from ..review import as_dict, parse_since
    from ..review.report import write_report

    store = open_store(db)
    rows = store.inspections(flagged=not include_all, since=parse_since(since))
    rows = [r for r in rows if r.score is not None]
    page = write_report(rows, out_dir, "Flagged parts" if not include_all else "Inspections")
    if as_json:
        click.echo(json.dumps({"page": str(page), "parts": [as_dict(r) for r in rows]}, indent=2))
    else:
        click.echo(f"{len(rows)} parts in {page}")


@click.command()
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The daemon's output folder; only files under it are served [env: INSPECTOR_OUT].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address (or name) to listen on; anything but loopback exposes the page to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another name the page is reached by (a DNS alias); requests naming any other host are refused.")
@click.option("--password", envvar="INSPECTOR_SERVE_PASSWORD",
              help="Ask every visitor for this password (HTTP basic auth, any user name) "
                   "[env: INSPECTOR_SERVE_PASSWORD, better than the command line].")
@logging_options(logging.INFO)
@fail_cleanly
def serve(db, out, host, port, allow_hosts, password):
    """A local web page for QA: flagged parts, heatmaps, confirm or dismiss, summary.

    On a --host other than loopback, anyone who can reach the port can label parts: give
    a password (INSPECTOR_SERVE_PASSWORD), and use it on a trusted network (plain HTTP).

    \b
    Examples:
      inspector serve --db /srv/line1/inspector.db --out /srv/line1/out
      inspector serve --port 9000    # then open http://127.0.0.1:9000/
      INSPECTOR_SERVE_PASSWORD=... inspector serve --host 0.0.0.0 --allow-host qa-pc.plant.local
    """
    from werkzeug.serving import make_server

    from ..web import create_app, is_loopback

    app = create_app(db, out, host=host, allowed_hosts=allow_hosts, password=password or None)
    server = make_server(host, port, app, threaded=True)
    if not is_loopback(host):
        click.echo("note: the QA page asks for a password (HTTP basic auth over plain HTTP: a trusted network only)"
                   if password else
                   f"warning: --host {host} makes the QA page reachable from the network: anyone who can reach "
                   f"port {server.server_port} can label parts. Set a password with --password or "
                   "INSPECTOR_SERVE_PASSWORD.", err=True)
    log.info("QA page on http://%s:%d/ (Ctrl-C to stop)", host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.config["STORE"].close()


@click.command()
@db_option
@click.option("--since", help="Only inspections received since a date or a span back from now (12h, 7d).")
@drift_options
@logging_options()
@json_option
@fail_cleanly
def stats(db, since, drift_window, drift_limit, as_json):
    """Per station and model: images, defects, errors, throughput, score percentiles and drift;
    per station the kinds of the defects QA confirmed.

    Drift compares the newest rows of each station and model with the calibration of the
    model's bundle (its path as the daemon loaded it): the median and 90th percentile of the
    last --drift-window passed scores, in calibration bands (p5-p95 of its good scores), and
    the shares of flagged parts and of part-in-view errors against the calibrated ones; with
    the last hour's counts against the expected ones. As `inspector watch` judges it. Drift is
    not judged until the window holds --drift-window parts.

    Kinds: the parts received since --since whose newest review confirms a defect, by the kind
    QA gave ("(no kind)": none given), most frequent first with their share and cumulative
    share (a Pareto table); in the JSON, "kinds" of each row (the station's, kind null: none
    given).

    \b
    Examples:
      inspector stats --since 24h
      inspector stats --db postgresql+psycopg://qa@db/inspector --json
      inspector stats --json --drift-window 100 | jq '.[] | {station, model, drift: .drift.drifting}'
    """
    from ..review import parse_since
    from ..review.stats import station_stats
    from ..review.text import stats_table

    store = open_store(db)
    rows = station_stats(store, parse_since(since), drift_window, drift_limit)
    click.echo(json.dumps(rows, indent=2) if as_json else (stats_table(rows) if rows else "no inspections"))


COMMANDS = (review, report, serve, stats)
