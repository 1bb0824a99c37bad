#!/usr/bin/env bash
# valgrind memcheck on a small run of every core code path (tools/valgrind_run.py)
# against the in-place build.  Fails when memcheck reports an error whose stack
# passes through mcscore's extension (invalid read/write, use of uninitialised
# memory, invalid free, or a definite leak).  The interpreter and NumPy/SciPy
# are not ours: their reports are counted but do not fail the run.
#   tools/valgrind.sh [script.py]   (about 30 s; default tools/valgrind_run.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
# the real interpreter, not a shim script (memcheck does not follow exec)
PY="$("$PY" -c 'import sys; print(sys.executable)')"
LOG="${MCSCORE_VALGRIND_LOG:-build/valgrind.log}"
mkdir -p "$(dirname "$LOG")"
export PYTHONMALLOC=malloc       # let memcheck see every allocation
export PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=2
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=40 --error-exitcode=0 \
    --log-file="$LOG" "$PY" "${1:-tools/valgrind_run.py}" | tee "${LOG%.log}.out"
"$PY" - "$LOG" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# memcheck records are blank-line separated blocks starting with "==pid== <kind>"
blocks = re.split(r"\n==\d+== \n", text)
ours = [b for b in blocks if re.search(r"_kernels|mcscore", b)
        and re.search(r"Invalid (read|write|free)|uninitialised|definitely lost|Mismatched|overlap", b)]
summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
print(f"memcheck: {summary[-1] if summary else '?'} error(s) in total, "
      f"{len(ours)} with mcscore's extension on the stack ({sys.argv[1]})")
for b in ours[:5]:
    print(b[:3000])
if not summary or 'valgrind run done' not in open(sys.argv[1].replace('.log', '.out')).read():
    print('memcheck did not run to the end'); sys.exit(1)
sys.exit(1 if ours else 0)
PY
