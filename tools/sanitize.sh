#!/usr/bin/env bash
# Build mcscore's extension(s) with AddressSanitizer + UndefinedBehaviorSanitizer
# into a separate directory (the in-place build is untouched) and run the test
# suite against that build.  Fails on any sanitizer report.
#
#   tools/sanitize.sh                  # all but the slow tests (~1 min on 2 cores)
#   tools/sanitize.sh tests/           # the whole suite
#   MCSCORE_SAN_DIR=/tmp/san tools/sanitize.sh
#
# Python itself is not instrumented, so libasan is LD_PRELOADed and leak
# detection is off (the interpreter leaks by design at exit; RSS-based leak
# tests live in tests/test_reliability.py, valgrind in tools/valgrind.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
OUT="${MCSCORE_SAN_DIR:-$ROOT/build/sanitize}"
PY="${PYTHON:-python}"
rm -rf "$OUT"
mkdir -p "$OUT/lib" "$OUT/tmp"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
echo "== building with $SAN into $OUT/lib"
# CC carries the flags so that setup.py's OpenMP probe (compile, link, run)
# and the extension are built the same way; OpenMP is required here.
CC="${CC:-gcc} $SAN -g" MCSCORE_REQUIRE_OPENMP=1 "$PY" setup.py build_ext -b "$OUT/lib" -t "$OUT/tmp" -q >"$OUT/build.log" 2>&1 || {
    cat "$OUT/build.log"; exit 1; }
# the pure-Python part of the package next to the instrumented extension
cp src/mcscore/*.py src/mcscore/*.pyi src/mcscore/*.pxd src/mcscore/py.typed "$OUT/lib/mcscore/" 2>/dev/null || true
# and its subpackages (mcscore.distributions, mcscore.finance)
for pkg in src/mcscore/*/__init__.py; do
    sub="$(basename "$(dirname "$pkg")")"
    mkdir -p "$OUT/lib/mcscore/$sub"
    cp "src/mcscore/$sub"/*.py "$OUT/lib/mcscore/$sub/"
done
# every extension instrumented; the core (_core: the one module with parallel
# regions, the stream driver) built with OpenMP
ls "$OUT"/lib/mcscore/_core*.so >/dev/null 2>&1 || { echo "no _core extension built"; exit 1; }
for so in "$OUT"/lib/mcscore/_*.so; do
    syms="$(nm -D "$so")"
    grep -q __asan_init <<<"$syms" || { echo "$so is not instrumented"; exit 1; }
    case "$(basename "$so")" in
        _core*) grep -q GOMP_parallel <<<"$syms" || { echo "$so was built without OpenMP"; exit 1; } ;;
    esac
done

LIBASAN="$(${CC:-gcc} -print-file-name=libasan.so)"
# libstdc++ is preloaded too, so that ASan's interceptor of C++ throws finds
# the real one (scipy's C++ special functions throw and catch internally;
# without it such a throw aborts the process)
LIBSTDCXX="$(${CC:-gcc} -print-file-name=libstdc++.so.6)"
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
# max_allocation_size_mb: the tests that ask for 16 GiB get a MemoryError here too
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=4096:print_summary=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$OUT/lib"
export MCSCORE_SANITIZED=1
# default: the whole suite except the slow-marked tests (the RSS test is
# skipped under ASan, whose allocator keeps freed memory in quarantine)
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
    TESTS=(tests/ -m "not slow")
fi
echo "== running pytest ${TESTS[*]} against the sanitized build"
set +e
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" 2>&1 | tee "$OUT/test.log"
rc=${PIPESTATUS[0]}
set -e
# the test processes' own stderr, and any subprocess's, land in the log
if grep -E "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$OUT/test.log"; then
    echo "== sanitizer report found"; exit 1
fi
if [ "$rc" -ne 0 ]; then echo "== pytest failed (rc=$rc)"; exit "$rc"; fi
"$PY" - <<'PY'
import mcscore, os
assert os.path.dirname(mcscore.__file__).endswith(os.path.join("lib", "mcscore")), mcscore.__file__
print("== sanitizers clean:", mcscore.__file__)
PY
