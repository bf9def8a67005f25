#!/usr/bin/env bash
# Runs pytest with the given interpreter; pytest's exit 5 ("no tests collected") is a failure
# of the suite's wiring, so it is reported loudly rather than passed off as green.
set -u
PY="$1"; shift
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run_tests: pytest collected no tests (exit 5); treating as failure" >&2
    exit 1
fi
exit "$rc"
