#!/usr/bin/env bash
# Print the path of a working CPython X.Y, or one line starting "error:" on stderr and exit 2.
#   scripts/find_python.sh 3.13
# Tries $PYTHON<XY> (e.g. PYTHON313) alone when it is set, else pythonX.Y on PATH, /usr/bin, /usr/local/bin and
# pyenv's versions folder. A pyenv shim that is on PATH but not activated fails the version check
# and is skipped, so a machine with the version installed under pyenv needs no `pyenv global`.
set -u
want="${1:?usage: find_python.sh X.Y}"
var="PYTHON${want/./}"
candidates=()
if [ -n "${!var:-}" ]; then
    candidates+=("${!var}")   # an explicit choice is the only one tried
else
command -v "python$want" >/dev/null 2>&1 && candidates+=("$(command -v "python$want")")
candidates+=("/usr/bin/python$want" "/usr/local/bin/python$want")
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for d in "$pyenv_root"/versions/"$want"*/bin/python"$want"; do
    [ -e "$d" ] && candidates+=("$d")
done
fi
for c in "${candidates[@]}"; do
    if [ -x "$c" ] && "$c" -c "import sys, venv; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" >/dev/null 2>&1; then
        echo "$c"
        exit 0
    fi
done
if [ -n "${!var:-}" ]; then
    echo "error: $var=${!var} is not a working Python $want with venv" >&2
else
    echo "error: Python $want not found (tried python$want on PATH, /usr/bin, /usr/local/bin, $pyenv_root/versions); install it (Debian: apt-get install python$want-venv, or pyenv install $want) or set $var=/path/to/python$want" >&2
fi
exit 2
