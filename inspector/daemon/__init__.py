"""The daemon (`inspector watch`): the loop, the intake, claims, batches and the outputs.

`Watcher` is the daemon on one inbox; `Output` is the interface a new output implements (one
class: see `outputs`).
"""

from .loop import Watcher
from .options import WatchOptions
from .outputs import Output, Outputs, Verdict

__all__ = ["Output", "Outputs", "Verdict", "WatchOptions", "Watcher"]
