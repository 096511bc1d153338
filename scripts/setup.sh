#!/usr/bin/env bash
# Set up (or update) the virtualenv at .venv in the repo root. Idempotent.
#
#   bash scripts/setup.sh          # the service
#   bash scripts/setup.sh --test   # plus test tools and the system packages the tests use
#
# torch is installed first and on its own: TORCH_SPEC (default torch==2.13.0) picks the build.
# On a GPU box plain PyPI torch is a CUDA build; for a CPU-only machine use e.g.
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

if (( with_tests )); then
    need=()
    command -v espeak-ng >/dev/null || need+=(espeak-ng)
    command -v chromium >/dev/null || need+=(chromium)
    [[ -d /usr/share/fonts/opentype/noto ]] || need+=(fonts-noto-cjk)
    command -v systemd-analyze >/dev/null || need+=(systemd)
    if (( ${#need[@]} )); then
        echo "installing system packages for the tests: ${need[*]}" >&2
        sudo_cmd=()
        [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip >/dev/null
# shellcheck disable=SC2086
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install ${TORCH_SPEC:-torch==2.13.0}
if (( with_tests )); then
    "${pip[@]}" install -e ".[test,bench,ray]"  # tests/test_ray.py runs in CI too
else
    "${pip[@]}" install -e .
fi
echo "ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'), .venv/bin/asr" >&2
