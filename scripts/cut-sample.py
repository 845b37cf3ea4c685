#!/usr/bin/env python3
"""Cut the small trace sample committed under data/sample/ from the full traces.

The full traces live in ../shared/traces (not part of the repository). The
sample keeps whole series (every step), so the replay and forecast code sees
real data at its real resolution, and stays under 1 MB in all:

- planetlab.csv.gz: the first 4 hosts (all their VMs, one day at 5 minutes);
- gcd.csv.gz: the first 2 hosts (20 jobs each, cpu and memory, one day);
- alibaba2018.csv.gz: cpu and memory of the cluster, the first 4 days at 10 s.

Usage: scripts/cut-sample.py [TRACES_DIR] [OUT_DIR]
"""
import csv
import gzip
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "traces")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "data", "sample")

CUTS = {
    # file: (keep this row?, given the running set of hosts seen)
    "planetlab.csv.gz": dict(hosts=4, resources=None, max_ts=None),
    "gcd.csv.gz": dict(hosts=2, resources=None, max_ts=None),
    "alibaba2018.csv.gz": dict(hosts=1, resources={"cpu", "memory"}, max_ts=4 * 86400),
}


def cut(name, hosts, resources, max_ts):
    src = os.path.join(TRACES, name)
    if not os.path.exists(src):
        sys.exit(f"{src}: not found (the full traces live in ../shared/traces)")
    seen = []
    rows = 0
    buf = io.BytesIO()
    # mtime=0 makes the output byte-for-byte reproducible.
    with gzip.open(src, "rt", newline="") as f, gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, mtime=0
    ) as gz:
        out = io.TextIOWrapper(gz, newline="")
        reader = csv.reader(f)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            host = row[1]
            if host not in seen:
                if len(seen) == hosts:
                    # Rows are grouped by host: the rest belongs to later hosts.
                    break
                seen.append(host)
            if resources is not None and row[3] not in resources:
                continue
            if max_ts is not None and int(row[0]) >= max_ts:
                continue
            writer.writerow(row)
            rows += 1
        out.flush()
        out.detach()
    dst = os.path.join(OUT, name)
    with open(dst, "wb") as f:
        f.write(buf.getvalue())
    print(f"{dst}: {rows} rows from {len(seen)} host(s), {len(buf.getvalue()) / 1024:.0f} KiB")
    return len(buf.getvalue())


def main():
    os.makedirs(OUT, exist_ok=True)
    total = sum(cut(name, **spec) for name, spec in CUTS.items())
    print(f"total {total / 1024:.0f} KiB")
    if total >= 1024 * 1024:
        sys.exit("the sample must stay under 1 MB: cut fewer hosts or days")


if __name__ == "__main__":
    main()
