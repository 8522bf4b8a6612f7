"""What the benchmark scripts share: rerunning themselves under the peers' virtual environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / "benchmarks" / ".peers-venv" / "bin" / "python"


def reexec_with_peers(script: str) -> None:
    """Replace this process by `script` under benchmarks/.peers-venv, same arguments less --with-peers.

    Returns (does nothing) when already running there; exits when that environment is missing.
    """
    if Path(sys.prefix).resolve() == PEERS_PYTHON.parent.parent.resolve():
        return
    if not PEERS_PYTHON.exists():
        sys.exit("no peers environment: run `bash benchmarks/setup_peers.sh` first")
    argv = [a for a in sys.argv[1:] if a != "--with-peers"]
    os.execv(str(PEERS_PYTHON), [str(PEERS_PYTHON), script, *argv])
