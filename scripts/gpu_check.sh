#!/usr/bin/env bash
# What only a GPU can check, in one go and in under 8 minutes, on a machine where `pip install -r requirements.txt`
# is done (with .venv/ at the repository root, its Python is used). Installs nothing.
#   (a) tests/test_families.py with every tiny pair on CUDA in bf16
#   (b) the embedded pair's bench on the toy suite
#   (c) an out-of-memory error through the CLI: one `error: out of memory` line, exit code 2
#   (d) a summary: GPU, torch and CUDA versions, each part's verdict and time
# On a machine without CUDA it says so and exits 0; where torch does not import (no install yet) it says so and
# exits 1. Otherwise the exit code is 0 if every part passed, 1 if one failed.
set -u
cd "$(dirname "$0")/.."
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
LOG=$(mktemp -d)

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "cannot import torch with $PY: run pip install -r requirements.txt first"
    exit 1
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: nothing to check here"
    exit 0
fi

declare -a NAMES VERDICTS TIMES
part() {  # part NAME COMMAND...: run it, show the end of its output, record its verdict and time
    local name=$1 start rc
    shift
    echo "== $name"
    start=$(date +%s)
    "$@" >"$LOG/$name.log" 2>&1
    rc=$?
    tail -n 25 "$LOG/$name.log"
    NAMES+=("$name")
    TIMES+=("$(( $(date +%s) - start )) s")
    case $rc in
        0) VERDICTS+=("pass") ;;
        124) VERDICTS+=("FAIL (over its time)") ;;
        *) VERDICTS+=("FAIL (exit $rc)") ;;
    esac
}

# (a) the tiny pairs of every family; 16-bit answers may part only at a near-tie (see the test file's docstring)
part families timeout 270 env LVSPEC_TEST_DEVICE=cuda LVSPEC_TEST_DTYPE=bfloat16 \
    "$PY" -m pytest -q -x -p no:cacheprovider tests/test_families.py

# (b) the embedded pair's bench
part bench timeout 120 "$PY" -m lvspec bench --suite toy --n 16 --methods vanilla,exact,lvspec --device cuda

# (c) the first CUDA work after loading asks for more than the GPU has: the CLI must end with one error line, exit 2
oom() {
    timeout 60 "$PY" - 2>"$LOG/oom.err" <<'EOF'
import sys

import torch

import lvspec.decode


def hog(pair, settings):
    free, total = torch.cuda.mem_get_info()
    torch.empty(free + total, dtype=torch.uint8, device="cuda")


lvspec.decode.warm_up = hog  # the CLI imports it when it runs
from lvspec import cli

sys.exit(cli.main(["generate", "--video", "assets/videos/blue-square-yellow-star.mp4", "--prompt", "Describe the video.",
                   "--method", "vanilla", "--device", "cuda"]))
EOF
    local rc=$?
    cat "$LOG/oom.err"
    [ "$rc" -eq 124 ] && return 124
    echo "exit code $rc"
    [ "$rc" -eq 2 ] && [ "$(grep -c '^error: ' "$LOG/oom.err")" -eq 1 ] && ! grep -q Traceback "$LOG/oom.err" \
        && tail -n 1 "$LOG/oom.err" | grep -q "^error: out of memory"
}
part oom oom

# (d) the summary
echo
echo "== summary"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0)); print('torch', torch.__version__, '· CUDA', torch.version.cuda)"
failed=0
for i in "${!NAMES[@]}"; do
    printf '%-10s %-22s %s\n' "${NAMES[$i]}" "${VERDICTS[$i]}" "${TIMES[$i]}"
    [ "${VERDICTS[$i]}" = pass ] || failed=1
done
echo "logs: $LOG"
exit $failed
