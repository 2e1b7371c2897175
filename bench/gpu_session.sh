#!/usr/bin/env bash
# The GPU checks of one lent-device session, in one script (issue 10, part 5).
#
#   mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.gz data/
#   run (carry: ["data"]): bash bench/gpu_session.sh          # results in $OUT
#
# Each step is capped so that the whole fits the session's device time; a step that runs out
# of time is cut off and the next one still runs. What a step printed is in $OUT/<step>.log, its
# last JSON line (the run summary or the bench figures) in $OUT/summary.jsonl.
set -u
OUT=${OUT:-$(mktemp -d)}
DATA=${DATA:-data/cifar10-jpeg.tar.gz}
RUNS=$OUT/runs

step() {  # step NAME SECONDS COMMAND...
    local name=$1 seconds=$2
    shift 2
    local started=$SECONDS
    timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    local line
    line=$(grep '^{' "$OUT/$name.log" | tail -n 1)
    printf '{"step": "%s", "exit": %d, "wall_s": %d, "result": %s}\n' \
        "$name" "$status" "$((SECONDS - started))" "${line:-null}" >>"$OUT/summary.jsonl"
}

nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python -c "import torch; print(torch.__version__, torch.cuda.is_available())" >>"$OUT/gpu.txt"
step data 45 python -m kdcore data --data-dir "$DATA"
step bench 120 python -m kdcore bench --data-dir "$DATA" --device cuda
step student 60 python -m kdcore student --data-dir "$DATA" --device cuda --out "$RUNS"
step student_compiled 90 env KDCORE_COMPILE=reduce-overhead python -m kdcore student \
    --data-dir "$DATA" --device cuda --out "$RUNS"
step teacher_cifarnet 90 python -m kdcore teacher --arch cifarnet --data-dir "$DATA" \
    --device cuda --out "$RUNS"
step teacher_resnet101_imagenet_stem 180 python -m kdcore teacher --arch resnet101 \
    --stem imagenet --data-dir "$DATA" --device cuda --out "$RUNS"
cat "$OUT/summary.jsonl"
