#!/usr/bin/env bash
# The whole suite in two runs, one per Python, as the product runs (docs/architecture.md, "Which
# Python runs what"):
#   1. current: the Blender side on Blender 5.3's Python 3.13 (bpy 5.3.0, numpy 2): every test not
#      marked `torch` outside tests/ml; the operators start the model side as a child process on TORCH_PY.
#   2. model:   TORCH_PY, Python 3.11 (torch, bpy 5.0.1, numpy 1): the model tests (marked `torch`)
#      plus the core and Blender-layer tests again, as the compatibility run for Blender 4.2-5.0.
# Usage: run_tests.sh [--only current|model] [--mark EXPR] BLENDER_PY TORCH_PY [pytest args...]
# (--mark: a pytest -m expression both runs add to their own selection, e.g. "not slow")
# A skipped test fails the run (INSTSEG_NO_SKIP=1, tests/conftest.py), and so does pytest's exit 5
# ("no tests collected"): either means part of the suite silently did not run.
set -u
only=""
mark=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only="$2"; shift 2 ;;
        --mark) mark="$2"; shift 2 ;;
        *) break ;;
    esac
done
BLENDER_PY="$1"; TORCH_PY="$2"; shift 2
export INSTSEG_NO_SKIP=1
export INSTSEG_TORCH_PYTHON="$TORCH_PY"

run() {  # name, python, pytest args...
    local name="$1" py="$2"; shift 2
    echo "== run_tests: $name ($("$py" -c 'import sys, bpy; print("Python %d.%d, bpy %s" % (sys.version_info[:2] + (bpy.app.version_string,)))' 2>/dev/null || echo "$py"))"
    "$py" -m pytest "$@"
    local rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "run_tests: $name: pytest collected no tests (exit 5); treating as failure" >&2
        rc=1
    fi
    return "$rc"
}

rc=0
if [ -z "$only" ] || [ "$only" = current ]; then
    run current "$BLENDER_PY" -m "not torch${mark:+ and ($mark)}" tests/core tests/procs tests/blender tests/pipeline "$@" || rc=1
fi
if [ -z "$only" ] || [ "$only" = model ]; then
    model_mark=()
    [ -n "$mark" ] && model_mark=(-m "$mark")
    run model "$TORCH_PY" "${model_mark[@]}" tests/core tests/ml tests/blender "$@" || rc=1
fi
exit "$rc"
