#!/usr/bin/env bash
# GPU figures in one run. On a machine with an NVIDIA GPU, from the repository root:
#
#   bash benchmarks/gpu_check.sh                 # set up, then the device tests and both benchmarks
#   bash benchmarks/gpu_check.sh --no-peers      # without PyKAN / flashkan / inkan
#   bash benchmarks/gpu_check.sh --device cpu    # dry run: the same steps on the CPU (CPU torch)
#
# 1. setup: benchmarks/.gpu-venv (kept out of git) with torch==<constraints-cpu.txt's version, inside
#    pyproject's range, from pip's default index: on Linux x86_64 PyPI's torch wheel is the CUDA build
#    (set TORCH_INDEX, e.g. https://download.pytorch.org/whl/cu126, for another CUDA build), then
#    kanlab with its dev extra, then the peers (benchmarks/setup_peers.sh into the same venv). Skipped
#    when that venv already imports kanlab and a torch that sees the device; GPU_CHECK_VENV=path uses
#    another venv (e.g. one set up by hand on a machine without internet).
# 2. pytest --device cuda -m device: the layer, model, training and symbolic tests on the GPU.
# 3. benchmarks/layers.py --device cuda --quick, then 4. benchmarks/training.py --device cuda --quick.
# Each step runs under its own timeout (seconds: SETUP_TIMEOUT_S, PYTEST_TIMEOUT_S, LAYERS_TIMEOUT_S,
# TRAINING_TIMEOUT_S); steps 2-4 take at most 9 minutes together, a few on an idle GPU. Everything
# goes to gpu-check-<UTC time>/ (GPU_CHECK_OUT overrides): one log per step and summary.txt (each
# step's exit status and seconds). A failed step is recorded and the next one still runs.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

device=cuda
peers=1
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:?--device needs cpu or cuda}"; shift 2 ;;
        --no-peers) peers=0; shift ;;
        *) echo "gpu_check.sh: unknown argument '$1' (use --device cpu|cuda, --no-peers)" >&2; exit 2 ;;
    esac
done
case "$device" in cpu|cuda) ;; *) echo "gpu_check.sh: --device must be cpu or cuda, got '$device'" >&2; exit 2 ;; esac

out="${GPU_CHECK_OUT:-$root/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
venv="${GPU_CHECK_VENV:-$root/benchmarks/.gpu-venv}"
py="$venv/bin/python"
torch_version="$(sed -n 's/^torch==//p' "$root/constraints-cpu.txt")"
mkdir -p "$out"
summary="$out/summary.txt"

# step NAME TIMEOUT_S COMMAND...: run it with its output in $out/NAME.log, record status and seconds
# (PYTEST_WORKERS: pytest-xdist workers for step 2, default 4)
step() {
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    echo "== $name (timeout ${limit}s): $*" | tee -a "$summary"
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    local note=""
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && note=" (timed out)"
    echo "   $name: exit $rc$note after $((SECONDS - start)) s, log $out/$name.log" | tee -a "$summary"
    tail -n 5 "$out/$name.log" | sed 's/^/   | /'
    return $rc
}

ready() {  # the venv imports kanlab, and its torch sees the device
    [ -x "$py" ] && "$py" - "$device" <<'PY' >/dev/null 2>&1
import sys
import torch
import kanlab  # noqa: F401
sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)
PY
}

setup() {
    [ -x "$py" ] || "${PYTHON:-python3}" -m venv "$venv" || return 1
    if [ "$device" = cuda ]; then
        # not -c constraints-cpu.txt: where pip is set up with a local CPU wheel it would pick that one
        "$py" -m pip install -q "torch==$torch_version" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} || return 1
        "$py" -m pip install -q -e "$root[dev]" || return 1
    else
        "$py" -m pip install -q -c "$root/constraints-cpu.txt" -e "$root[dev]" || return 1
    fi
    if [ "$peers" = 1 ]; then  # optional: the run goes on without them
        PEERS_VENV="$venv" bash "$root/benchmarks/setup_peers.sh" || echo "peers not installed: left out"
    fi
    "$py" -c "import torch; print('torch', torch.__version__, 'CUDA build', torch.version.cuda, \
'sees a GPU:', torch.cuda.is_available())"
}

{
    echo "# gpu_check.sh --device $device, $(date -u +%Y-%m-%dT%H:%M:%SZ), kanlab $(git rev-parse --short HEAD 2>/dev/null)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} | tee "$summary"

if ready; then
    echo "== setup: $venv already imports kanlab and sees $device, skipped" | tee -a "$summary"
else
    export root device peers venv py torch_version
    export -f setup
    step setup "${SETUP_TIMEOUT_S:-900}" bash -c setup
    if ! ready; then
        echo "gpu_check.sh: $venv cannot run on $device (see $out/setup.log): on a GPU machine, the" \
             "torch installed does not see the GPU (driver, or set TORCH_INDEX to a CUDA build's index)" | tee -a "$summary"
        exit 1
    fi
fi
"$py" -c "import torch; print('# torch', torch.__version__, 'CUDA build', torch.version.cuda)" | tee -a "$summary"

failed=0
# -m device: the tests taking the device fixture (slow ones included: the compiled path's)
step pytest "${PYTEST_TIMEOUT_S:-180}" "$py" -m pytest --device "$device" -m device -n "${PYTEST_WORKERS:-4}" -q -p no:cacheprovider \
    --junitxml "$out/pytest.xml" || failed=1
step layers "${LAYERS_TIMEOUT_S:-150}" "$py" benchmarks/layers.py --device "$device" --quick \
    --json "$out/layers.json" || failed=1
step training "${TRAINING_TIMEOUT_S:-210}" "$py" benchmarks/training.py --device "$device" --quick || failed=1
echo "# done: $out (failed steps: $failed)" | tee -a "$summary"
exit $failed
