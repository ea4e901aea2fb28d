#!/usr/bin/env bash
# Instructions per 64-byte alloc+free pair, counted by valgrind's callgrind
# (the same on every run, unlike time), for each allocator of
# examples/callgrind_pair.rs.
#
#   scripts/callgrind-pair.sh               # every allocator
#   scripts/callgrind-pair.sh flist arena   # some (the harness, null, always)
#
# Builds the example in release mode (honours CARGO_TARGET_DIR), runs it under
# `valgrind --tool=callgrind` with N = 1,000,000 and N = 2,000,000 pairs and
# reads the total Ir from callgrind's `Collected :` line. Per pair:
# (Ir(2M) - Ir(1M)) / 1M, which removes start-up, warm-up and exit.
# "harness" is the same loop with `null` (a fixed pointer, nothing on free,
# inlined); "net" is Ir/pair minus it. `null-call` is `null` called out of
# line: its net is the cost of the two calls and returns, which the C
# allocators (glibc, jemalloc, mimalloc) always pay and the inlined flist fast
# paths do not. FLISTALLOC_BACKEND and FLISTALLOC_CAPACITY are unset for the
# runs, so `flist` measures the flist backend; `flist@jemalloc` and
# `flist@malloc` run `flist` with FLISTALLOC_BACKEND set to that backend (the
# cost of `Flist`'s run-time dispatch, to compare with `jemalloc` and `system`
# installed directly).
set -euo pipefail

cd "$(dirname "$0")/.."

N1=1000000
N2=2000000

cargo build --release --quiet --example callgrind_pair
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples/callgrind_pair"
[ -x "$bin" ] || { echo "callgrind-pair.sh: no binary at $bin" >&2; exit 1; }

if [ $# -gt 0 ]; then
    allocators=("$@")
else
    allocators=(arena arena-try libc flist mimalloc jemalloc system flist@jemalloc flist@malloc null-call)
fi
known=$("$bin" --list)
for a in "${allocators[@]}"; do
    grep -qx -- "${a%@*}" <<<"$known" ||
        { echo "callgrind-pair.sh: unknown allocator '$a' (known: $(echo $known))" >&2; exit 2; }
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# ir ALLOCATOR N: the total instruction count of one run.
ir() {
    local name=${1%@*} backend=()
    [ "$name" != "$1" ] && backend=("FLISTALLOC_BACKEND=${1#*@}")
    if ! env -u FLISTALLOC_BACKEND -u FLISTALLOC_CAPACITY "${backend[@]}" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$bin" "$name" "$2" >/dev/null 2>"$log"; then
        echo "callgrind-pair.sh: $1 $2 failed:" >&2
        cat "$log" >&2
        exit 1
    fi
    local v
    v=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$log")
    [ -n "$v" ] || { echo "callgrind-pair.sh: no 'Collected' line for $1 $2" >&2; cat "$log" >&2; exit 1; }
    echo "$v"
}

# per_pair IR1 IR2: instructions per pair, two decimals.
per_pair() {
    awk -v a="$1" -v b="$2" -v n1="$N1" -v n2="$N2" \
        'BEGIN { printf "%.2f", (b - a) / (n2 - n1) }'
}

h1=$(ir null "$N1")
h2=$(ir null "$N2")
harness=$(per_pair "$h1" "$h2")

echo "$(valgrind --version), rustc $(rustc --version | cut -d' ' -f2), $(uname -m)"
echo "64-byte alloc+free pair; Ir/pair = (Ir(N=$N2) - Ir(N=$N1)) / $((N2 - N1))"
echo
printf '%-15s %9s %9s %9s %14s %14s\n' allocator Ir/pair harness net "Ir(N=1M)" "Ir(N=2M)"
printf '%-15s %9s %9s %9s %14s %14s\n' null "$harness" "$harness" 0.00 "$h1" "$h2"
for a in "${allocators[@]}"; do
    [ "$a" = null ] && continue
    i1=$(ir "$a" "$N1")
    i2=$(ir "$a" "$N2")
    p=$(per_pair "$i1" "$i2")
    net=$(awk -v p="$p" -v h="$harness" 'BEGIN { printf "%.2f", p - h }')
    printf '%-15s %9s %9s %9s %14s %14s\n' "$a" "$p" "$harness" "$net" "$i1" "$i2"
done
