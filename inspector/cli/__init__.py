"""The `inspector` command line: each command parses its options, makes one library call (a use
case, `inspector.usecases`), and prints. Each command's docstring is its --help text.

Commands by room: `model` (train, update, calibrate, score, evaluate, bundle), `station` (watch,
doctor), `qa` (review, report, serve, stats), `bench` (benchmark); what they share is in `common`.
"""

from __future__ import annotations

import click

from .. import __version__
from . import bench, model, qa, station



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inspector")
def cli():
    """Visual inspection of parts with a convolutional autoencoder trained on good parts.

    \b
    Typical session:
      inspector train sample_data/train/good --out models/screw
      inspector evaluate models/screw --good sample_data/test/good --defect sample_data/test/defect
      inspector score models/screw part.png --heatmaps heatmaps/
      inspector watch inbox/ --model models/screw --out line/    # verdicts in inspector.db
      inspector review list --flagged --unreviewed
      inspector serve --out line/                                # QA pages on http://127.0.0.1:8765/
      inspector review label 42 ok --note "dust on the lens"
    """



for command in (*model.COMMANDS, *station.COMMANDS, *qa.COMMANDS, *bench.COMMANDS):
    cli.add_command(command)
watch = station.watch  # the command whose options a --config file names


def main() -> None:
    cli()
