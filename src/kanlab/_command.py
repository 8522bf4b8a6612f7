"""The `kanlab` command's entry point: a Ctrl-C is answered from the first statement of kanlab's code.

Python's own SIGINT handler raises KeyboardInterrupt, which printed a traceback when Ctrl-C came
while the command loaded (argparse, parsing the arguments: the first ~100 ms). Here it ends the
command at once with "kanlab: interrupted" and exit status 130, nothing written yet; kanlab.cli.main
keeps that until its command's modules are loaded, then the command turns KeyboardInterrupt into
the same status (saying which finished runs are kept). Before this module runs, in Python's own
start-up, SIGINT ends the process by the signal (a shell reports 130 too).
"""

from __future__ import annotations

import os
import signal


def interrupted(signum: int, frame: object) -> None:
    """SIGINT while the command loads: say so and exit 130 at once."""
    os.write(2, b"kanlab: interrupted\n")
    os._exit(130)


def main() -> int:
    """The `kanlab` console script: kanlab.cli.main on sys.argv, with Ctrl-C handled from the start."""
    signal.signal(signal.SIGINT, interrupted)
    try:
        from kanlab.cli import main as command

        signal.signal(signal.SIGINT, signal.default_int_handler)  # cli.main swaps it again as it loads
        return command()
    except KeyboardInterrupt:  # in the few steps before cli.main's own handling begins
        interrupted(signal.SIGINT, None)
        return 130
