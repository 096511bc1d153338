#!/usr/bin/env bash
# The one command that regenerates every table of docs/BENCHMARKS.md: each benchmark in turn, with the
# arguments that produced the tables there. Each script replaces only its own marked blocks of the doc
# (scripts/bench_report.py), each block stamped with the date, the machine and the command.
#
#   bash scripts/bench_all.sh                  # everything: about 1 h 10 min on 2 cores (+ 8 min with a GPU)
#   bash scripts/bench_all.sh startup live     # a subset, by name (see NAMES below)
#   bash scripts/bench_all.sh --smoke          # the same commands with --smoke: tiny models, nothing written
#
# The numbers are wall-clock seconds: the machine must be quiet for the whole run. A benchmark that fails
# is reported and the others still run; the exit status says whether any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
NAMES=(offline startup live speakers hotwords contention profile gpu)
# Minutes each takes in full on the 2-core machine, from the scripts' docstrings and the doc's own timings
# (the first run also builds the full-size models, not counted); a smoke run takes about a minute each.
declare -A MINUTES=([offline]=20 [startup]=3 [live]=8 [speakers]=18 [hotwords]=4 [contention]=10 [profile]=3 [gpu]=8)

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "$0"
    echo "NAMES: ${NAMES[*]}"
}

SMOKE=""
SELECTED=()
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=--smoke ;;
        -h | --help) usage; exit 0 ;;
        *) [[ -v "MINUTES[$arg]" ]] || { echo "bench_all: unknown benchmark '$arg' (NAMES: ${NAMES[*]})" >&2; exit 2; }
           SELECTED+=("$arg") ;;
    esac
done
((${#SELECTED[@]})) || SELECTED=("${NAMES[@]}")

cuda_visible() {
    # nvidia-smi, not torch: a CPU machine's .venv has a CPU build of torch, and gpu_check.sh installs its own
    command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

# Whether a benchmark can run here; prints why not. Two are written by others and may not exist yet.
available() {
    case "$1" in
        contention) [[ -f scripts/bench_contention.py ]] || { echo "no scripts/bench_contention.py"; return 1; } ;;
        gpu) [[ -f scripts/gpu_check.sh ]] || { echo "no scripts/gpu_check.sh"; return 1; }
             cuda_visible || { echo "no CUDA device visible"; return 1; } ;;
    esac
}

FAILED=()

# One command; a failure is noted and the run goes on (an hour in, the other tables are still worth having).
attempt() {
    echo "== $*" >&2
    "$@" || FAILED+=("$*")
}

# One script with the doc's arguments, then --smoke when asked: each script's smoke keeps the parts asked
# for and shrinks the sizes, so a smoke run checks these argument lists too.
bench() {
    local script=$1
    shift
    attempt "$PY" "scripts/$script" "$@" ${SMOKE:+"$SMOKE"}
}

# The commands behind each name: the "Command:" of each table in docs/BENCHMARKS.md.
run() {
    case "$1" in
        offline) bench bench.py --minutes 10 60 --repeat 2 --modes funasr,fp32,int8,onnx-int8 --long-modes int8 \
                     --long-segment-minutes 10 --segment-modes funasr,int8,onnx-int8 ;;
        startup) bench bench_startup.py --repeat 3 ;;
        live) bench bench_live.py --streams 1,2,3 --seconds 60 --batches 1,2,4,8 ;;
        speakers)
            bench bench_speakers.py --models .cache/full-models --minutes 10 --only embeddings pipeline
            bench bench_speakers.py --models .cache/full-models --minutes 10 --only pipeline --precision int8
            bench bench_speakers.py --only clustering --windows 9600 72000 --funasr-timeout 400 ;;
        hotwords)
            # The doc's fp32 rows came from a run of int8,fp32 with 0,50 hotwords; int8 is measured with
            # 0,50,200 just before, and each precision has its own block, so fp32 alone gives those rows.
            bench bench_hotwords.py --minutes 10 --repeat 1 --precisions int8 --hotwords 0,50,200
            bench bench_hotwords.py --minutes 10 --repeat 1 --precisions fp32 --hotwords 0,50 ;;
        contention) bench bench_contention.py ;;
        profile) bench profile_ops.py ;;
        gpu) attempt bash scripts/gpu_check.sh ${SMOKE:+"$SMOKE"} ;;
    esac
}

TODO=()
total=0
for name in "${SELECTED[@]}"; do
    if why=$(available "$name"); then
        TODO+=("$name")
        total=$((total + MINUTES[$name]))
    else
        echo "bench_all: skipping $name: $why" >&2
    fi
done

if [[ -n "$SMOKE" ]]; then
    echo "bench_all: smoke run of ${TODO[*]}: tiny models, short audio, about 6 min; nothing written to docs/" >&2
else
    echo "bench_all: WARNING: timings are wall-clock: the machine must be quiet (nothing else running) until" \
         "this ends." >&2
    echo "bench_all: ${TODO[*]}: about $((total / 60)) h $((total % 60)) min, plus building the full-size" \
         "models on a first run; each writes its own blocks of docs/BENCHMARKS.md" >&2
fi

started=$SECONDS
# bench_live and bench_speakers read the models without building them (the others build their own the same
# way, and skip what is up to date): build them first.
if [[ " ${TODO[*]} " == *" live "* || " ${TODO[*]} " == *" speakers "* ]]; then
    if [[ -n "$SMOKE" ]]; then
        attempt "$PY" scripts/make_test_models.py >/dev/null
    else
        attempt "$PY" scripts/make_test_models.py --full >/dev/null
    fi
fi
for name in "${TODO[@]}"; do
    echo "bench_all: $name ($(((SECONDS - started) / 60)) min so far)" >&2
    run "$name"
done
echo "bench_all: done in $(((SECONDS - started) / 60)) min" >&2
if ((${#FAILED[@]})); then
    printf 'bench_all: FAILED: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
