"""Builds and drops large dicts, as a data-processing script does: each
round builds a dict of 100,000 string keys to small lists and tuples,
derives a second dict from it, keeps a tenth of it, and drops the rest.
Prints a checksum that depends only on the work done."""

kept = []
total = 0
for rnd in range(8):
    d = {f"key-{rnd}-{i}": [i, str(i * 7), (i, rnd)] for i in range(100_000)}
    inverse = {v[1]: k for k, v in d.items() if v[0] % 3 == 0}
    kept.append({k: d[k] for k in list(d)[:: 10]})
    total += len(d) + len(inverse) + sum(len(k) for k in inverse.values())
    del d, inverse
    if len(kept) > 4:
        kept.pop(0)
print(total, sum(len(k) for k in kept))
