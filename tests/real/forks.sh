#!/usr/bin/env bash
# A few hundred processes from bash: command substitutions, pipelines,
# background jobs and subshells. Prints figures that depend only on the work
# (never on pids or timing), so every allocator must print the same.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# 150 command substitutions with a 2-process pipeline each: 300 processes.
total=0
for i in $(seq 1 150); do
    n=$(printf '%s\n' "word$i" | wc -c)
    total=$((total + n * i))
done
echo "pipelines: $total"

# 100 background subshells writing files, then one reader.
for i in $(seq 1 100); do
    ( printf '%d\n' $((i * i)) > "$dir/$i" ) &
done
wait
echo "background: $(cat "$dir"/* | awk '{s += $1} END {print s}')"

# Nested subshells and a sort over many lines.
lines=$(for i in $(seq 1 2000); do echo "line $((i * 7919 % 2003))"; done | sort | uniq | wc -l)
echo "sorted unique lines: $lines"
echo "bash array: $(a=(); for i in $(seq 1 5000); do a+=("x$i"); done; echo "${#a[@]} ${a[4999]}")"
