#!/usr/bin/env bash
# The C library's tests (issue 11, item 7): builds libflistalloc.so and the C
# programs in flistalloc-c/tests/, then runs
#   - the binary checks once (exact export list; no __tls_get_addr in
#     malloc/free),
#   - FLISTALLOC_BACKEND=malloc under LD_PRELOAD -> flistalloc_backend() is
#     "malloc" (and the same for flist and jemalloc),
#   - for each FLISTALLOC_BACKEND of flist, malloc, jemalloc, with the library
#     in LD_PRELOAD: conformance (C semantics, errno after every call), the
#     FLISTALLOC_CAPACITY check, thread lifecycle, stress, fork while
#     allocating, dlopen of a library with 24 KiB of __thread data.
# Each program runs under `timeout 120`; the first failure stops the run
# with a message naming it. Prints the seconds each step and the whole took.
#
#   scripts/c-tests.sh              # the above (what .ci/run runs)
#   scripts/c-tests.sh --reference  # the programs without the library:
#                                   # glibc, then the system jemalloc
#                                   # (libjemalloc2) preloaded; checks the
#                                   # tests themselves (library-only checks
#                                   # print as deviations there)
# Honours CARGO_TARGET_DIR; programs go to $CARGO_TARGET_DIR/c-tests/.
# FLISTALLOC_C_LIB=path tests that libflistalloc.so instead of building one.
# STRESS_SECONDS (default 3) sets the stress run's length per backend.
# C_TESTS_KEEP_GOING=1 runs every program and lists the failures at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
mode=${1:-library}
target=${CARGO_TARGET_DIR:-target}
out=$target/c-tests
src=flistalloc-c/tests
lib=$target/release-c/libflistalloc.so
stress_s=${STRESS_SECONDS:-3}

say() { printf '\n--- c-tests: %s\n' "$*"; }
die() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! c-tests FAILED: %s\n' "$*" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf 'c-tests: stopped after %s s\n' "$(($(date +%s) - t0))" >&2
  exit 1
}

# Tools: installed only when missing (cc, nm/objdump, timeout).
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v nm >/dev/null && command -v objdump >/dev/null || need+=(binutils)
command -v timeout >/dev/null || need+=(coreutils)
if [ "$mode" = --reference ] && [ ! -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]; then need+=(libjemalloc2); fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing missing tools: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"; }; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! c-tests: 'apt-get install ${need[*]}' FAILED; continuing without them"
    echo "!!! (whatever needs them fails or is skipped below)"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  fi
fi

# A failed program stops the run, or with C_TESTS_KEEP_GOING=1 is listed at
# the end (the exit status is still 1).
failed=()
step_failed() {
  if [ "${C_TESTS_KEEP_GOING:-0}" = 1 ]; then
    printf '    !!! FAILED: %s\n' "$1"
    failed+=("$1")
  else
    die "$1"
  fi
}

finish() {
  if [ ${#failed[@]} -gt 0 ]; then
    printf '\n!!! c-tests: %d step(s) FAILED:\n' ${#failed[@]}
    printf '!!!   %s\n' "${failed[@]}"
    printf 'c-tests: finished in %s s\n' "$(($(date +%s) - t0))"
    exit 1
  fi
  printf '\nc-tests: all passed in %s s\n' "$(($(date +%s) - t0))"
  exit 0
}

# run NAME CMD...: prints it, runs it under timeout 120, stops on failure.
# With EXPECT_LINE set, the output must also contain that line.
run() {
  local name=$1 s rc=0
  shift
  s=$(date +%s.%N)
  printf '\n--- c-tests: %s\n    $' "$name"
  printf ' %q' "$@"
  printf '\n'
  "$@" >"$out/last.log" 2>&1 || rc=$?
  sed 's/^/    /' "$out/last.log"
  if [ $rc -eq 124 ]; then step_failed "$name: timed out after 120 s"; return; fi
  if [ $rc -ne 0 ]; then step_failed "$name: exit status $rc"; return; fi
  if [ -n "${EXPECT_LINE:-}" ] && ! grep -qxF "$EXPECT_LINE" "$out/last.log"; then
    step_failed "$name: exit 0 but the line \"$EXPECT_LINE\" is missing (an atexit handler did not finish?)"
    return
  fi
  awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "    (%.1f s)\n", b - a }'
}

mkdir -p "$out"
say "compiling the C programs into $out"
cflags=(-O1 -g -pthread -fno-builtin -Wall -Wextra -Werror -Iflistalloc-c/include)
for p in conformance lifecycle stress fork dltls backend; do
  cc "${cflags[@]}" -o "$out/$p" "$src/$p.c" -ldl || die "compiling $src/$p.c"
done
cc -O1 -g -pthread -fPIC -shared -Wall -Werror -o "$out/libkeys40.so" "$src/keys40.c" || die "compiling keys40.c"
cc -O1 -g -pthread -fPIC -shared -Wall -Werror -o "$out/libdltls.so" "$src/dltls_lib.c" || die "compiling dltls_lib.c"

# The programs, with $pre (LD_PRELOAD) and extra environment; keys40 goes
# after the allocator so its 40 keys come before the allocator's own.
programs() {
  local tag=$1 pre=$2
  shift 2
  local env=(env "$@")
  run "$tag: conformance" timeout 120 "${env[@]}" LD_PRELOAD="$pre" "$out/conformance"
  EXPECT_LINE="lifecycle: all checks passed" \
    run "$tag: thread lifecycle" timeout 120 "${env[@]}" LD_PRELOAD="$pre $out/libkeys40.so" "$out/lifecycle"
  run "$tag: stress ($stress_s s)" timeout 120 "${env[@]}" LD_PRELOAD="$pre $out/libkeys40.so" "$out/stress" "$stress_s"
  run "$tag: fork while allocating" timeout 120 "${env[@]}" LD_PRELOAD="$pre" "$out/fork"
  run "$tag: fork while allocating, 40 keys first" timeout 120 "${env[@]}" LD_PRELOAD="$pre $out/libkeys40.so" "$out/fork"
  run "$tag: dlopen of __thread data" timeout 120 "${env[@]}" LD_PRELOAD="$pre" "$out/dltls" "$out/libdltls.so"
}

if [ "$mode" = --reference ]; then
  programs "glibc" ""
  je=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
  if [ -e "$je" ]; then
    programs "system jemalloc" "$je"
  else
    echo "!!! c-tests: $je missing: the system-jemalloc reference run is SKIPPED"
  fi
  finish
fi

if [ -n "${FLISTALLOC_C_LIB:-}" ]; then
  lib=$FLISTALLOC_C_LIB
  say "testing the library FLISTALLOC_C_LIB=$lib (not built here)"
else
  say "building the library: cargo build --profile release-c -p flistalloc-c"
  cargo build --profile release-c -p flistalloc-c || die "cargo build --profile release-c -p flistalloc-c"
fi
[ -f "$lib" ] || die "$lib was not built"

run "binary checks (exports, __tls_get_addr)" "$src/check-binary.sh" "$lib"

for b in flist malloc jemalloc; do
  got=$(timeout 120 env LD_PRELOAD="$lib" FLISTALLOC_BACKEND=$b "$out/backend" 2>&1) || die "backend program failed: $got"
  echo "    FLISTALLOC_BACKEND=$b under LD_PRELOAD: flistalloc_backend() = $got"
  [ "$got" = "$b" ] || die "FLISTALLOC_BACKEND=$b under LD_PRELOAD: flistalloc_backend() returned \"$got\""
done
got=$(timeout 120 env -u FLISTALLOC_BACKEND LD_PRELOAD="$lib" "$out/backend" 2>&1) || die "backend program failed: $got"
[ "$got" = flist ] || die "FLISTALLOC_BACKEND unset: flistalloc_backend() returned \"$got\", want the default flist"
echo "    FLISTALLOC_BACKEND unset: flistalloc_backend() = $got"

for b in flist malloc jemalloc; do
  run "FLISTALLOC_BACKEND=$b: capacity (FLISTALLOC_CAPACITY=64M)" timeout 120 env LD_PRELOAD="$lib" \
    FLISTALLOC_BACKEND=$b FLISTALLOC_EXPECT_BACKEND=$b FLISTALLOC_CAPACITY=64M CONFORMANCE_CAPACITY=1 \
    "$out/conformance"
  programs "FLISTALLOC_BACKEND=$b" "$lib" FLISTALLOC_BACKEND=$b FLISTALLOC_EXPECT_BACKEND=$b
done
finish
