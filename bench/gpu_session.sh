#!/usr/bin/env bash
# The GPU checks of one lent-device session, in one script (issue 10, part 5).
#
#   mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.gz data/    # data/ is git-ignored
#   run (carry: ["data"], timeout_s: 600): bash bench/gpu_session.sh
#
# The steps run in the order of what matters most, each capped so that the whole ends within one
# 600-second call (the caps add up to 570 s); a step that runs out of time is cut off and the
# next one still runs. The profile step says what limits the engine there. The device tool
# brings back at most 8 files from $OUT, so the runs train outside it and the script leaves four
# files there:
#   gpu.txt        the card, torch's version, whether the CLI imports (no streamlit there)
#   summary.jsonl  one line a step: its exit status, wall seconds and its last JSON line
#   steps.log      what every step printed, one after another
#   runs.tar.gz    every run's config, status, metrics and evaluation (no weights)
# Dry run on a CPU, as tests/test_bench_scripts.py does (SKIP: steps left out):
#   DEVICE=cpu DATA=synthetic EPOCHS=1 SUBSET=256 ARCH=resnet18 SKIP=bench bash bench/gpu_session.sh
set -u
export PYTHONUNBUFFERED=1  # a step cut off by its cap still leaves what it printed
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}  # the device machine has python3, not python
DATA=${DATA:-data/cifar10-jpeg.tar.gz}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-10}
ARCH=${ARCH:-resnet101}  # the study's teacher
RUNS=$(mktemp -d)
COMMON=(--data-dir "$DATA" --device "$DEVICE" --epochs "$EPOCHS" --out "$RUNS")
if [ -n "${SUBSET:-}" ]; then COMMON+=(--train-subset "$SUBSET"); fi

step() {  # step NAME SECONDS COMMAND...
    local name=$1 seconds=$2
    shift 2
    case " ${SKIP:-} " in *" $name "*) return ;; esac
    local started=$SECONDS log
    log=$(mktemp)
    timeout "$seconds" "$@" >"$log" 2>&1
    local status=$? wall=$((SECONDS - started))
    local line
    line=$(grep '^[[{]' "$log" | tail -n 1)  # the summary: an object, the study's a list
    printf '{"step": "%s", "exit": %d, "wall_s": %d, "result": %s}\n' \
        "$name" "$status" "$wall" "${line:-null}" >>"$OUT/summary.jsonl"
    { echo "=== $name (exit $status, $wall s): $*"; cat "$log"; } >>"$OUT/steps.log"
    rm -f "$log"
}

{
    nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    $PY -c "import kdcore.cli" && echo "kdcore.cli imports"
} >"$OUT/gpu.txt" 2>&1
step data 35 $PY -m kdcore data --data-dir "$DATA"
step student 35 $PY -m kdcore student "${COMMON[@]}"
step profile 30 $PY bench/engine_profile.py --data-dir "$DATA" --device "$DEVICE" \
    --batches "${PROFILE_BATCHES:-60}"
step study 330 $PY -m kdcore study "${COMMON[@]}" --teacher-epochs "$EPOCHS" --arch "$ARCH" \
    --stem cifar
step teacher_imagenet_stem 70 $PY -m kdcore teacher "${COMMON[@]}" --arch "$ARCH" \
    --stem imagenet
step student_compiled 40 env KDCORE_COMPILE=reduce-overhead $PY -m kdcore student "${COMMON[@]}"
step bench 30 $PY -m kdcore bench --data-dir "$DATA" --device "$DEVICE" \
    --batches "${BENCH_BATCHES:-50}"
(cd "$RUNS" && tar -czf "$OUT/runs.tar.gz" --exclude='*.pt' --exclude=teacher_cache .)
cat "$OUT/summary.jsonl"
