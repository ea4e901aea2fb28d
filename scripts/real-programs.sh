#!/usr/bin/env bash
# Real programs, written elsewhere, under LD_PRELOAD=libflistalloc.so, once
# per backend (FLISTALLOC_BACKEND=flist, malloc, jemalloc): each must pass and
# print the same as without the library.
#
#   bash     tests/real/forks.sh: a few hundred processes (pipelines,
#            command substitutions, background subshells)
#   git      init, add, commit, log, diff, status on a repo of 1,000 files
#            (fixed dates and names, so the commit ids are the same too)
#   make     `make -j2` of tests/real/cproject with gcc (gcc, cc1, as, ld all
#            preloaded), then the program it built
#   cxx      tests/real/cxx_threads.cpp: std::string, std::map, std::thread
#   python   PYTHONMALLOC=malloc python3 -m test -j2 test_threading
#            test_subprocess test_os test_json test_re test_pickle (the
#            Debian python3 with its libpython3.X-testsuite package, installed
#            with apt-get when missing)
#
# Not rustc or cargo: they bundle their own jemalloc, so a preload would not
# reach their allocations.
#
# usage: scripts/real-programs.sh [--lib PATH] [--only NAME[,NAME...]]
#   --lib PATH   preload this library instead of
#                ${CARGO_TARGET_DIR:-target}/release-c/libflistalloc.so (built
#                with `cargo build --profile release-c -p flistalloc-c` when
#                missing). A library without flistalloc_backend() (say the
#                system's libjemalloc.so.2, as a stand-in) runs once, as is.
#   --only NAMES bash, git, make, cxx, python (default: all)
# Environment: PYTHON (the python3 to test; default /usr/bin/python3),
# PYTHON_BACKENDS (the backends python's tests run under; default all three).
#
# Exit status 0 when every program passes with the same output under every
# backend; 1 otherwise (the differing output is shown); 2 on bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

lib=""
only="bash,git,make,cxx,python"
while [ $# -gt 0 ]; do
    case "$1" in
        --lib) lib=${2:?--lib needs a path}; shift 2 ;;
        --only) only=${2:?--only needs names}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "real-programs: unknown argument $1" >&2; exit 2 ;;
    esac
done
wanted() { [[ ",$only," == *",$1,"* ]]; }

started=$(date +%s)
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# ---------------------------------------------------------------------------
# The library and the configurations to run under.
if [ -z "$lib" ]; then
    lib="${CARGO_TARGET_DIR:-$root/target}/release-c/libflistalloc.so"
    if [ ! -f "$lib" ]; then
        echo "real-programs: building $lib"
        cargo build --profile release-c -p flistalloc-c
    fi
fi
[ -f "$lib" ] || { echo "real-programs: no library at $lib" >&2; exit 1; }
lib=$(realpath "$lib")

gcc -O2 -o "$work/probe" tests/real/probe.c -ldl
probe=$(LD_PRELOAD="$lib" "$work/probe")
if [[ "$probe" == *"backend=-"* ]]; then
    backends=("-")          # a stand-in: no flistalloc_backend(), no backends
else
    backends=(flist malloc jemalloc)
fi

# Runs "$@" under backend $1 ("none": nothing preloaded).
under() {
    local b=$1
    shift
    if [ "$b" = none ]; then
        env -u LD_PRELOAD -u FLISTALLOC_BACKEND "$@"
    elif [ "$b" = - ]; then
        env -u FLISTALLOC_BACKEND LD_PRELOAD="$lib" "$@"
    else
        env LD_PRELOAD="$lib" FLISTALLOC_BACKEND="$b" "$@"
    fi
}

# The proof of each configuration: malloc comes from the library, and the
# backend is the one asked for.
for b in "${backends[@]}"; do
    got=$(under "$b" "$work/probe")
    want="malloc=$lib backend=$b"
    if [ "$got" != "$want" ]; then
        echo "real-programs: FAILED: under backend $b the probe says '$got', expected '$want'" >&2
        exit 1
    fi
    echo "real-programs: backend $b: $got"
done

failures=0
# check NAME BACKEND REFERENCE_FILE OUTPUT_FILE STATUS: same output as the
# reference (the run with nothing preloaded) and a zero exit status.
check() {
    local name=$1 b=$2 ref=$3 out=$4 status=$5
    if [ "$status" -ne 0 ]; then
        echo "real-programs: FAILED: $name under $b: exit status $status; last lines:"
        tail -n 30 "$out"
        failures=$((failures + 1))
    elif ! diff -u "$ref" "$out" > "$work/diff"; then
        echo "real-programs: FAILED: $name under $b: output differs from the run without the library:"
        head -n 40 "$work/diff"
        failures=$((failures + 1))
    else
        echo "real-programs: $name under $b: ok ($(wc -l < "$out") lines, same as without the library)"
    fi
}

# run_all NAME CMD...: the command without the library (the reference), then
# under every backend in $run_backends (default: all).
run_all() {
    local name=$1
    shift
    local t0=$SECONDS
    local status=0
    under none "$@" > "$work/$name.ref" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "real-programs: FAILED: $name fails even without the library (exit $status):"
        tail -n 30 "$work/$name.ref"
        failures=$((failures + 1))
        return
    fi
    local bs=("${backends[@]}")
    if [ -n "${run_backends:-}" ]; then
        read -ra bs <<< "$run_backends"
    fi
    for b in "${bs[@]}"; do
        status=0
        under "$b" "$@" > "$work/$name.$b" 2>&1 || status=$?
        check "$name" "$b" "$work/$name.ref" "$work/$name.$b" "$status"
    done
    echo "real-programs: $name took $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------
# bash
if wanted bash; then
    printf '\n--- bash: a few hundred processes\n'
    run_all bash bash tests/real/forks.sh
fi

# ---------------------------------------------------------------------------
# git: a repo of 1,000 files. Names, e-mails and dates are fixed, so the
# commit ids (and so the whole output) are the same in every run.
git_job() {
    local repo
    repo=$(mktemp -d "$work/git.XXXXXX")
    export GIT_AUTHOR_NAME=flist GIT_AUTHOR_EMAIL=flist@example.org
    export GIT_COMMITTER_NAME=flist GIT_COMMITTER_EMAIL=flist@example.org
    export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
    export GIT_CONFIG_NOSYSTEM=1 HOME="$repo"
    cd "$repo"
    git init -q -b main .
    local d f
    for d in 0 1 2 3 4 5 6 7 8 9; do
        mkdir "dir$d"
        for f in $(seq -w 0 99); do
            printf 'file %s/%s\nline %d\n' "$d" "$f" "$((d * 7919 + 10#$f))" > "dir$d/f$f.txt"
        done
    done
    git add .
    git commit -q -m "1,000 files"
    for f in dir3/f*.txt; do echo "changed" >> "$f"; done
    git rm -q dir7/f0*.txt
    git add -A
    git commit -q -m "change 100 files, remove 10"
    git log --stat --format='%H %an %s' | tail -n 5
    git log --oneline
    git diff --shortstat HEAD~1
    git status --short | wc -l
    git ls-files | wc -l
    git gc -q
    git fsck --no-progress 2>&1
    git cat-file -p HEAD~1:dir9/f99.txt | md5sum
}
if wanted git; then
    printf '\n--- git: init/add/commit/log on 1,000 files\n'
    export -f git_job
    export work
    run_all git bash -c git_job
fi

# ---------------------------------------------------------------------------
# make -j2 of a small C project with gcc, then the program it built.
make_job() {
    local out
    out=$(mktemp -d "$work/make.XXXXXX")
    make -s -j2 -C tests/real/cproject OUT="$out"
    "$out/wordcount"
}
if wanted make; then
    printf '\n--- make -j2 of tests/real/cproject with gcc\n'
    export -f make_job
    run_all make bash -c make_job
fi

# ---------------------------------------------------------------------------
# C++: std::string, std::map, std::thread (compiled once, without the library).
if wanted cxx; then
    printf '\n--- C++: std::string, std::map, std::thread\n'
    g++ -O2 -pthread -o "$work/cxx_threads" tests/real/cxx_threads.cpp
    run_all cxx "$work/cxx_threads"
fi

# ---------------------------------------------------------------------------
# python's regression tests, with PYTHONMALLOC=malloc so that every object
# goes through malloc. The output compared: the summary lines (timings vary).
if wanted python; then
    printf '\n--- python: PYTHONMALLOC=malloc python3 -m test -j2 ...\n'
    py=${PYTHON:-/usr/bin/python3}
    [ -x "$py" ] || py=$(command -v python3 || true)
    tests=(test_threading test_subprocess test_os test_json test_re test_pickle)
    if [ -n "$py" ] && ! "$py" -c 'import test.test_json' 2>/dev/null; then
        pkg="libpython$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-testsuite"
        echo "real-programs: $py has no test package; installing $pkg"
        if command -v apt-get >/dev/null; then
            (apt-get install -y "$pkg" >/dev/null 2>&1 ||
                { apt-get update >/dev/null 2>&1 && apt-get install -y "$pkg" >/dev/null 2>&1; }) || true
        fi
    fi
    if [ -z "$py" ] || ! "$py" -c 'import test.test_json' 2>/dev/null; then
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! PYTHON TESTS SKIPPED: no python3 with its regression test package"
        echo "!!! (Debian: apt-get install libpython3.X-testsuite)"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    else
        have=()
        for t in "${tests[@]}"; do
            if "$py" -c "import test.$t" 2>/dev/null; then have+=("$t"); else echo "real-programs: $py has no $t; left out"; fi
        done
        py_job() {
            # The summary: which tests passed (no timings); the log's end
            # when it fails.
            local log st=0
            log=$(mktemp "$work/py.XXXXXX")
            # shellcheck disable=SC2086 # a list of test names
            PYTHONMALLOC=malloc "$py" -m test -j2 $have_list > "$log" 2>&1 || st=$?
            grep -E '^(All [0-9]+ tests OK|Tests result|[0-9]+ tests? (failed|OK))' "$log" || true
            if [ "$st" -ne 0 ]; then
                tail -n 40 "$log"
            fi
            return "$st"
        }
        export -f py_job
        have_list="${have[*]}"
        export py have_list
        echo "real-programs: $py ($("$py" --version 2>&1)): ${have[*]}"
        run_backends="${PYTHON_BACKENDS:-}" run_all python bash -c py_job
    fi
fi

mins=$(awk -v s=$(( $(date +%s) - started )) 'BEGIN {printf "%.1f", s / 60}')
echo
if [ "$failures" -ne 0 ]; then
    echo "real-programs: $failures FAILED (in $mins min)"
    exit 1
fi
echo "real-programs: all passed with ${backends[*]} (in $mins min)"
