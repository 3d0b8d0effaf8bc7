"""Whether the user trusts the workspace's own Python (custom metrics): one reading of the switch.

Trust is given from outside the workspace (a command-line flag, or INT8WB_TRUST=1 in the
environment the editor or the shell starts us with), never by a file in the workspace.
"""
from __future__ import annotations

import os

ENV = "INT8WB_TRUST"


def trusted(flag: bool = False) -> bool:
    """`flag` (e.g. --trust) or INT8WB_TRUST=1."""
    return bool(flag) or os.environ.get(ENV) == "1"
