"""Commands of a station: watch (the daemon) and doctor (is the station ready?), with the station's
settings file (--config)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tomllib
from pathlib import Path

import click

from ..formats import names_of_formats_with_rules
from .common import db_option, emit, fail_cleanly, json_option, load, logging_options, open_store

log = logging.getLogger("inspector")


def _config_keys(command: click.Command) -> dict[str, str]:
    """A command's parameters by the key a --config file names them with: the long option
    without its dashes (summary-every), or the argument's name (inbox)."""
    keys = {}
    for param in command.params:
        if param.name != "config":
            longs = [opt[2:] for opt in param.opts if opt.startswith("--")]
            keys[longs[0] if longs else param.name] = param.name
    return keys


def _read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """--config FILE: the TOML file's values (keys: `watch`'s options) become the defaults of this
    command's options; the command line and environment variables override them."""
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", ctx, param) from None
    data = _flatten_outputs(data)
    keys = _config_keys(watch)
    unknown = sorted(key for key in data if key.replace("_", "-") not in keys)
    if unknown:
        raise click.BadParameter(f"{path}: unknown key {', '.join(map(repr, unknown))}; the keys are watch's "
                                 f"options: {', '.join(sorted(keys))}", ctx, param)
    own = {p.name for p in ctx.command.params}
    values = {keys[key.replace("_", "-")]: value for key, value in data.items()}
    ctx.default_map = {**(ctx.default_map or {}), **{name: v for name, v in values.items() if name in own}}


def _flatten_outputs(data: dict) -> dict:
    """[outputs.mqtt] url = ... / qos = 1 -> the options --mqtt / --mqtt-qos (the same for webhook)."""
    outputs = data.get("outputs")
    if not isinstance(outputs, dict):
        return data
    flat = {key: value for key, value in data.items() if key != "outputs"}
    for kind, table in outputs.items():
        if not isinstance(table, dict):
            flat[f"outputs.{kind}"] = table  # reported as an unknown key
            continue
        for key, value in table.items():
            flat[kind if key == "url" else f"{kind}-{key}"] = value
    return flat


def line_options(f):
    """Where verdicts go besides the database: MQTT, a webhook; and the line's deadline."""
    from ..line.mqtt import DEFAULT_TOPIC

    options = [
        click.option("--mqtt", "mqtt_url", envvar="INSPECTOR_MQTT", metavar="URL",
                     help="Publish each verdict to this MQTT broker: mqtt://[user[:password]@]host[:port] or "
                          "mqtts://... [env: INSPECTOR_MQTT]. Config file: [outputs.mqtt] url = ..."),
        click.option("--mqtt-topic", default=DEFAULT_TOPIC, show_default=True,
                     help="Topic of the verdict messages ({station} is replaced)."),
        click.option("--mqtt-qos", type=click.IntRange(0, 2), default=1, show_default=True,
                     help="MQTT quality of service of the verdict messages."),
        click.option("--mqtt-password-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="File holding the broker's password (else INSPECTOR_MQTT_PASSWORD, else the URL's)."),
        click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="CA certificate the broker's TLS certificate is checked against (mqtts://)."),
        click.option("--mqtt-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Client certificate for the broker (TLS)."),
        click.option("--mqtt-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The client certificate's private key."),
        click.option("--webhook", "webhook_url", envvar="INSPECTOR_WEBHOOK", metavar="URL",
                     help="POST each verdict's JSON to this URL; a 2xx answer means delivered "
                          "[env: INSPECTOR_WEBHOOK]."),
        click.option("--webhook-timeout", type=click.FloatRange(0.1), default=5.0, show_default=True,
                     help="Seconds the webhook has to answer."),
        click.option("--opcua", "opcua_url", envvar="INSPECTOR_OPCUA", metavar="URL",
                     help="Serve the station's last verdict and counters as OPC UA nodes at this endpoint, e.g. "
                          "opc.tcp://127.0.0.1:4840 [env: INSPECTOR_OPCUA]. Config file: [outputs.opcua] url = ..."),
        click.option("--opcua-user", envvar="INSPECTOR_OPCUA_USER",
                     help="The user OPC UA clients log in as [env: INSPECTOR_OPCUA_USER]."),
        click.option("--opcua-password-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="File holding that user's password (else INSPECTOR_OPCUA_PASSWORD)."),
        click.option("--opcua-anonymous", is_flag=True,
                     help="Let OPC UA clients read without logging in (off unless given)."),
        click.option("--deadline-ms", type=click.FloatRange(1), envvar="INSPECTOR_DEADLINE_MS",
                     help="Time from a photo's file being complete to the reject gate: a verdict sent later "
                          "carries late: true and is logged [env: INSPECTOR_DEADLINE_MS]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def line_outputs(station, out, mqtt_url, mqtt_topic, mqtt_qos, mqtt_password_file, mqtt_ca, mqtt_cert, mqtt_key,
                 webhook_url, webhook_timeout, opcua_url, opcua_user, opcua_password_file, opcua_anonymous,
                 deadline_ms) -> list:
    """The line outputs the options ask for (none when no URL is given). If one cannot start,
    those started before it are closed."""
    outputs = []
    try:
        if mqtt_url:
            from ..line.mqtt import BrokerAddress, MqttOutput, read_password

            address = BrokerAddress.parse(mqtt_url, read_password(mqtt_password_file))
            outputs.append(MqttOutput(address, station, out, topic=mqtt_topic, qos=mqtt_qos, ca=mqtt_ca,
                                      cert=mqtt_cert, key=mqtt_key, deadline_ms=deadline_ms))
        if webhook_url:
            from ..line.webhook import WebhookOutput

            outputs.append(WebhookOutput(webhook_url, out, timeout=webhook_timeout, deadline_ms=deadline_ms))
        if opcua_url:
            from ..line.login import read_password as read_secret
            from ..line.opcua import OpcUaOutput

            password = read_secret(opcua_password_file, "INSPECTOR_OPCUA_PASSWORD", "--opcua-password-file")
            outputs.append(OpcUaOutput(opcua_url, station, opcua_user, password, anonymous=opcua_anonymous,
                                       deadline_ms=deadline_ms))
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


def line_checks(station, mqtt_url, mqtt_password_file, mqtt_ca, mqtt_cert, mqtt_key, webhook_url, webhook_timeout,
                opcua_url, opcua_user, opcua_password_file, **_) -> list:
    """doctor's checks of the line outputs the options name."""
    from ..line.checks import check_mqtt, check_opcua, check_webhook
    from ..usecases.doctor import Check

    checks = []
    if mqtt_url:
        checks.append(Check("mqtt", *check_mqtt(mqtt_url, station, mqtt_password_file, mqtt_ca, mqtt_cert, mqtt_key)))
    if webhook_url:
        checks.append(Check("webhook", *check_webhook(webhook_url, webhook_timeout)))
    if opcua_url:
        checks.append(Check("opcua", *check_opcua(opcua_url, station, opcua_user, opcua_password_file)))
    return checks


def config_option(f):
    return click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
                        expose_value=False, callback=_read_config,
                        help="TOML file of watch's options (inbox = \"/srv/line1/inbox\", summary-every = 30, ...); "
                             "the command line and environment variables override it.")(f)


def drift_options(f):
    """--drift-window and --drift-limit, for watch and stats."""
    from ..drift import DEFAULT_LIMIT, DEFAULT_WINDOW

    f = click.option("--drift-limit", type=click.FloatRange(0, min_open=True), default=DEFAULT_LIMIT,
                     show_default=True,
                     help="Drift when the median or 90th percentile of passed scores moved this many calibration "
                          "bands (p5-p95 of the calibration's good scores).")(f)
    return click.option("--drift-window", type=click.IntRange(0), default=DEFAULT_WINDOW, show_default=True,
                        help="Drift is judged on this many of the last parts of a station and model (0: off).")(f)


@click.command()
@click.argument("inbox", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_dir", envvar="INSPECTOR_MODEL", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model bundle directory [env: INSPECTOR_MODEL].")
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where heatmaps, archive/, rejected/ and duplicates/ go [env: INSPECTOR_OUT].")
@click.option("--polling", is_flag=True, help="Poll the folder instead of OS events (network filesystems).")
@click.option("--batch", type=click.IntRange(1, 256), default=32, show_default=True,
              help="Most images scored together in one model call (a lone image is scored at once; a burst "
                   "goes faster in larger batches).")
@click.option("--on-done", type=click.Choice(["move", "keep"]), default="move", show_default=True,
              help="After the verdict: move the image to OUT/archive/<date>/, or leave it in the inbox.")
@click.option("--pictures", type=click.Choice(["all", "flagged", "none"]), default="all", show_default=True,
              envvar="INSPECTOR_PICTURES",
              help="Which judged parts get their heatmap and overlays in OUT/heatmaps/: every part, only those "
                   "judged defects, or none (the overlay on the upright part is a defect's only, the one on the "
                   "photo is not drawn for a good part that shows no heat, its photo archived as PNG, JPEG or "
                   "BMP). Verdicts, "
                   "scores and hot regions are stored either way; QA's page shows a part without pictures by "
                   "its photo alone [env: INSPECTOR_PICTURES].")
@click.option("--settle", type=click.FloatRange(0), default=0.5, show_default=True,
              help="Seconds a file of a format without a completeness rule must stay unchanged before it is "
                   f"taken ({names_of_formats_with_rules()} are taken once complete by their rule: at once when "
                   "renamed in or closed, else after 50 ms unchanged).")
@click.option("--incomplete-timeout", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds an empty, unfinished (by its format's rule) or unreadable file may stay unchanged "
                   "before it is rejected as such.")
@click.option("--summary-every", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds between one-line summaries on stderr (skipped while nothing comes in).")
@click.option("--station", envvar="INSPECTOR_STATION", default=lambda: __import__("socket").gethostname(),
              help="Name of this line or machine, stored with every verdict [env: INSPECTOR_STATION; default: host name].")
@click.option("--claim-timeout", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds after which a claim left by a worker on another host is taken over.")
@click.option("--exit-when-idle", type=click.FloatRange(0.1),
              help="Exit after this many seconds with nothing to do (for batch runs and demos).")
@click.option("--profile", "profile_file", type=click.Path(dir_okay=False, path_type=Path),
              help="When stopping, write the time spent per stage (read, hash, claim, decode, preprocess, model, "
                   "score, pictures, commit, move) to this JSON file.")
@click.option("--model-threads", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="INSPECTOR_MODEL_THREADS",
              help="Threads the model runs on. One leaves the other cores to decoding the next batch: a burst "
                   "ran 10% faster on two cores than with the model on both [env: INSPECTOR_MODEL_THREADS].")
@click.option("--decode-in", type=click.Choice(["processes", "threads"]), default="processes", show_default=True,
              envvar="INSPECTOR_DECODE_IN",
              help="Where files are decoded and prepared: worker processes (one per core), or threads of the "
                   "daemon's process, where they hold up the pictures and the line outputs on the interpreter's "
                   "lock: a burst with pictures and MQTT on ran 5.8-6.8% below one without them in processes, "
                   "10.1% in threads, the same day [env: INSPECTOR_DECODE_IN].")
@drift_options
@line_options
@config_option
@logging_options(logging.INFO, "Debug log lines too: one per judged image, ok ones included.")
@fail_cleanly
def watch(inbox, model_dir, db, out, polling, batch, on_done, pictures, settle, incomplete_timeout, summary_every,
          station, claim_timeout, exit_when_idle, drift_window, drift_limit, profile_file, model_threads, decode_in,
          **line):
    """Judge every image that lands in INBOX, once, with verdicts in the database.

    Images already in INBOX are taken first, then every new one. A file is taken when it is
    complete (unchanged, and complete by its format's rule: PNG, JPEG, TIFF, BMP); names ending
    in .tmp or .part and dot-files are left alone until renamed; only files directly in INBOX are
    judged (a folder in it is named once in a WARNING). Each verdict is committed with its heatmap
    and overlays (OUT/heatmaps/; on the photo at 256 px for a part with no hot region, none for a
    good part with no heat whose archived photo QA's page shows instead; the upright part's for a
    defect; --pictures flagged: a defect's only), then the image moves to OUT/archive/<date>/.
    Unreadable files get an error row and move to OUT/rejected/; a second copy of an image already judged moves to OUT/duplicates/.
    SIGINT or SIGTERM finishes the batches in hand and exits 0. A restart after a crash finishes
    what was in flight, scoring nothing twice.

    Several daemons may watch one inbox with one database (PostgreSQL across machines): each
    image is claimed by exactly one of them, and a claim left by a worker that died is taken
    over (at once on the same host, after --claim-timeout from another host).

    Logs on stderr: the start, a summary of each --summary-every interval in which images came
    in (none while idle), each defect, errors and duplicates; each ok part too with -v. deploy/ has a systemd unit running it with --config.

    Drift: the last --drift-window passed scores are compared with the bundle's calibration
    (median and 90th percentile, in calibration bands: p5-p95 of its good scores), and the
    shares of flagged parts and of part-in-view errors with the calibrated ones. One WARNING
    when the line drifts past the limits, one INFO line when it is back.

    Verdicts to the line: with --mqtt each verdict is published (QoS 1) on
    inspector/STATION/verdict, the last one retained on inspector/STATION/last, and
    inspector/STATION/status says online or offline; with --webhook it is POSTed as JSON. Both
    send from an outbox committed with the verdict: a broker or server that is away delays the
    messages, in order, and loses none (at least once: dedupe by "id"). docs/line.md has the
    message's schema. With --opcua the daemon serves OPC UA nodes for a PLC: the last verdict
    and counters since the start (clients log in as --opcua-user unless --opcua-anonymous).

    Signal handlers only set flags, so storms of them neither freeze nor kill the daemon.
    SIGHUP (kill -HUP PID, systemctl reload) loads --model again between two batches (a
    symlink is followed anew): the new bundle is checked and its model run once first; if that
    fails, an ERROR and the old model goes on judging. Each part's row names its model.

    \b
    Examples:
      inspector watch /srv/line1/inbox --model models/screw --out /srv/line1/out -v
      INSPECTOR_DB=postgresql+psycopg://qa@db/inspector inspector watch inbox/ --model m
      inspector watch /mnt/share/inbox --model m --polling --station line2 --pictures flagged
      inspector watch --config /etc/inspector/watch.toml --log-format json
      inspector watch inbox/ --model models/current --drift-window 100 --drift-limit 0.4
      ln -sfn screw-v2 models/current.new && mv -T models/current.new models/current && kill -HUP PID
      inspector watch inbox/ --model m --mqtt mqtt://inspector@127.0.0.1 --mqtt-password-file /etc/inspector/mqtt.pw
      inspector watch inbox/ --model m --webhook http://mes.local/verdicts --deadline-ms 800
      inspector watch inbox/ --model m --opcua opc.tcp://10.0.5.2:4840 --opcua-user plc --opcua-password-file pw
    """
    from ..daemon import WatchOptions, Watcher

    if profile_file is not None and not os.access(profile_file.parent if str(profile_file.parent) else ".", os.W_OK):
        raise click.ClickException(f"--profile: cannot write into {profile_file.parent}")
    # Signals while starting up are noted, not lost: a SIGHUP (systemctl reload right after
    # start) reloads once the daemon runs, a SIGTERM or SIGINT stops it before it takes a file.
    # The handlers only append to a list: a handler must take no lock.
    asked: list[int] = []
    handled = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _: asked.append(signum)) for sig in handled}
    try:
        from ..tf_setup import model_threads as threads_in_use, use_threads

        if not use_threads(model_threads):  # only before the model's first operation
            log.warning("--model-threads %d not applied: the model had run in this process already", model_threads)
        bundle = load(Path(os.path.realpath(model_dir)))  # a symlink is resolved now, and again at each reload
        store = open_store(db, create=True)
        options = WatchOptions(out=out, batch=batch, on_done=on_done, pictures=pictures, polling=polling,
                               settle=settle, incomplete_timeout=incomplete_timeout, summary_every=summary_every,
                               station=station, claim_timeout=claim_timeout, drift_window=drift_window,
                               drift_limit=drift_limit, decode_processes=decode_in == "processes")
        outputs = line_outputs(station, out, **line)
        try:
            watcher = Watcher(inbox, bundle, store, options, model_source=model_dir, outputs=outputs)
        except BaseException:
            for output in outputs:
                output.close()
            raise
        if signal.SIGHUP in asked:
            watcher.request_reload()
        if signal.SIGTERM in asked or signal.SIGINT in asked:
            watcher.stop()
        threads = threads_in_use()
        log.info("watching %s with %s (%s, threshold %.6g, the model on %d thread%s); verdicts in %s", inbox,
                 bundle.pipeline.name, bundle.path, bundle.threshold, threads, "" if threads == 1 else "s",
                 store.engine.url.render_as_string(hide_password=True))
        watcher.run(max_idle=exit_when_idle)
    finally:
        for sig, handler in previous.items():
            # Stopped, the process exits: the tail of a storm of signals arriving meanwhile is
            # ignored rather than turning a clean stop (exit code 0) into a kill.
            if handler in (signal.SIG_DFL, signal.default_int_handler):
                handler = signal.SIG_IGN
            signal.signal(sig, handler)
        if profile_file is not None:
            from ..timing import STAGE_TIMES

            try:
                profile_file.write_text(json.dumps(STAGE_TIMES.summary(), indent=2))
            except OSError as exc:  # never hide why the daemon stopped behind the profile's failure
                log.error("cannot write the profile to %s: %s", profile_file, exc)


@click.command()
@click.argument("inbox", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_dir", envvar="INSPECTOR_MODEL", type=click.Path(path_type=Path),
              help="Model bundle directory [env: INSPECTOR_MODEL].")
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="The daemon's output folder [env: INSPECTOR_OUT].")
@click.option("--polling", is_flag=True, help="The daemon polls the inbox (no warning for a network filesystem).")
@click.option("--min-free", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Gigabytes that must be free where the inbox and the out folder are.")
@click.option("--station", envvar="INSPECTOR_STATION", default=lambda: __import__("socket").gethostname(),
              help="The station's name, as watch is given it [env: INSPECTOR_STATION; default: host name].")
@line_options
@config_option
@logging_options()
@json_option
@fail_cleanly
def doctor(inbox, model_dir, db, out, polling, min_free, station, as_json, **line):
    """Check a station's set-up for `inspector watch`: one OK, WARN or FAIL line per check.

    The model bundle loads; the database is reachable and its schema migrated (a missing SQLite
    file is reported, not created); the inbox exists and the out folder can be made, both
    writable, on which filesystem (a network one wants --polling), with --min-free GB free.
    Verdicts the line outputs still owe are counted (WARN, with the oldest's time). With --mqtt,
    the broker must take the login and acknowledge a QoS 1 message on
    inspector/STATION/status-check; with --webhook, its host must take a connection (no verdict
    is sent); with --opcua, a daemon serving there must let the user in and show the station's
    nodes, or the address must be free to serve on. Give it the daemon's options or its --config file. Exit status 1 when a check fails.

    \b
    Examples:
      inspector doctor --config /etc/inspector/watch.toml
      inspector doctor /srv/line1/inbox --model models/screw --out /srv/line1/out --json
    """
    from ..usecases.doctor import FAIL, check_station

    checks = check_station(inbox, model_dir, db, out, polling, int(min_free * 1e9), line=line_checks(station, **line))
    failed = any(c.status == FAIL for c in checks)
    emit({"ok": not failed, "checks": [c.to_dict() for c in checks]}, as_json,
          "\n".join(f"{c.status:4}  {c.name:8}  {c.detail}" for c in checks))
    sys.exit(1 if failed else 0)


COMMANDS = (watch, doctor)
