"""The ``archsim`` console script: the CLI is imported inside the interrupt guard, so a Ctrl-C at any moment after
the interpreter starts (even while the CLI's own modules load) ends with one line and status 130."""
from __future__ import annotations

import sys


def main() -> int:
    try:
        from archsim.cli import main as cli_main
    except KeyboardInterrupt:
        print("archsim: interrupted", file=sys.stderr)
        return 130
    return cli_main()
