#!/usr/bin/env bash
# Opt-in: build benchmarks/.peers-venv with kanlab plus the peer KAN libraries the benchmarks compare
# against (PyKAN 0.2.8, flashkan, inkan). Kept apart from the project's .venv so that nothing the
# peers pull in can change what the tests run on. Re-running it is safe.
#   bash benchmarks/setup_peers.sh            then   benchmarks/.peers-venv/bin/python benchmarks/layers.py
# PEERS_VENV=path installs them into another venv (benchmarks/gpu_check.sh: its CUDA one).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEERS_VENV:-$root/benchmarks/.peers-venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# The constraints pin the CPU build of torch; without them a peer's bare `torch` pulls CUDA wheels.
"$venv/bin/python" -m pip install -q -c "$root/constraints-cpu.txt" -e "$root"
# PyKAN declares no dependencies but imports these; the KAN peers are pure Python.
"$venv/bin/python" -m pip install -q -c "$root/constraints-cpu.txt" \
    pykan==0.2.8 flashkan==0.2.0 inkan==0.5.2 scikit-learn pandas pyyaml
"$venv/bin/python" - <<'PY'
import importlib
for name in ("kanlab", "kan", "flashkan", "inkan"):
    mod = importlib.import_module(name)
    print(f"{name:9s} ok  {getattr(mod, '__version__', '')}")
PY
