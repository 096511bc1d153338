#!/usr/bin/env bash
# Run the tests in tiers, each printing its slowest tests.
#
#   bash scripts/test.sh          # both tiers: what CI runs
#   bash scripts/test.sh fast     # the everyday loop: tests that run in this process (about 2 minutes)
#   bash scripts/test.sh slow     # tests that start processes, a browser, Ray or a notify socket
#   bash scripts/test.sh fast -k upload    # anything after the tier goes to pytest
#
# The tier is the `slow` marker (tests/conftest.py says which tests carry it and why).
set -euo pipefail
cd "$(dirname "$0")/.."

tier="${1:-all}"
[[ $# -gt 0 ]] && shift
pytest=(.venv/bin/python -m pytest --durations=25)
case "$tier" in
    fast) "${pytest[@]}" -m "not slow" "$@" ;;
    slow) "${pytest[@]}" -m slow "$@" ;;
    all)
        echo "== fast tier" >&2
        "${pytest[@]}" -m "not slow" "$@"
        echo "== slow tier" >&2
        "${pytest[@]}" -m slow "$@"
        ;;
    *) echo "usage: bash scripts/test.sh [fast|slow|all] [pytest arguments]" >&2; exit 2 ;;
esac
