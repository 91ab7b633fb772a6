"""Quantiles of a Prometheus histogram between two /metrics dumps.

usage: histogram.py BEFORE AFTER NAME [LABEL]
  NAME   the histogram, e.g. tributary_view_freshness_seconds
  LABEL  only series whose labels contain this text, e.g. source="cash"
Prints "p50 X ms, p99 Y ms over N" for what was observed between the two
dumps, interpolating linearly inside a bucket.
"""
import re
import sys


def histogram(path, name, label):
    buckets, total = {}, 0.0
    for line in open(path):
        if label and label not in line:
            continue
        m = re.match(name + r'_bucket\{.*le="([^"]+)"\} (\S+)', line)
        if m and m.group(1) != "+Inf":
            buckets[float(m.group(1))] = buckets.get(float(m.group(1)), 0.0) + float(m.group(2))
        m = re.match(name + r'_count(?:\{.*\})? (\S+)', line)
        if m:
            total += float(m.group(1))
    return buckets, total


def main():
    before, after, name = sys.argv[1:4]
    label = sys.argv[4] if len(sys.argv) > 4 else ""
    (b0, n0), (b1, n1) = histogram(before, name, label), histogram(after, name, label)
    buckets = sorted((le, n - b0.get(le, 0.0)) for le, n in b1.items())
    total = n1 - n0

    def q(p):
        want, lo, below = p * total, 0.0, 0.0
        for le, n in buckets:
            if n >= want:
                return (lo + (le - lo) * (want - below) / max(n - below, 1)) * 1000
            lo, below = le, n
        return float("inf")

    print(f"p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms over {int(total)}")


main()
