"""Build (or reuse) a demo ``purchases`` dataset of about N rows for benchmarks.

    python bench/make_data.py --rows 1000000 --out bench/out/data-1m
    python bench/make_data.py --rows 10000000 --out bench/out/data-10m

Writes ``OUT/part-NNNNN.parquet`` with ``dpquery.demo.write_demo`` and a small
``OUT/_summary.json``.  If the summary already matches the requested
parameters (and the generator source is unchanged, and the part files are all
there) the folder is reused as is.  Prints rows, wall time and peak RSS.

Note: because of ``_summary.json`` the folder must be read with a glob,
``pl.scan_parquet("OUT/*.parquet")``; ``pl.scan_parquet("OUT")`` refuses a
folder with mixed file extensions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing
    sys.path.insert(0, str(ROOT))

from dpquery import demo  # noqa: E402

SUMMARY = "_summary.json"


def _generator_fingerprint() -> str:
    return hashlib.sha256(Path(demo.__file__).read_bytes()).hexdigest()[:16]


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reusable(out: Path, params: dict) -> dict | None:
    try:
        summary = json.loads((out / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("params") != params:
        return None
    expected = {f"part-{i:05d}.parquet" for i in range(summary.get("files", -1))}
    present = {p.name for p in out.glob("part-*.parquet")}
    return summary if expected and expected == present else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True, help="approximate number of rows")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chunk-customers", type=int, default=200_000)
    ap.add_argument("--force", action="store_true", help="rebuild even if reusable")
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("--rows must be >= 1")

    customers = demo.customers_for_rows(args.rows)
    params = {
        "customers": customers,
        "seed": args.seed,
        "chunk_customers": args.chunk_customers,
        "generator": _generator_fingerprint(),
    }
    out: Path = args.out
    start = time.perf_counter()
    summary = None if args.force else _reusable(out, params)
    if summary is not None:
        print(
            f"reused {out}: {summary['rows']:,} rows, {customers:,} customers, "
            f"{summary['files']} files (check {time.perf_counter() - start:.2f} s)"
        )
        return 0

    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)  # an interrupted build is never reused
    result = demo.write_demo(
        out, customers, seed=args.seed, chunk_customers=args.chunk_customers
    )
    elapsed = time.perf_counter() - start
    summary = {
        "params": params,
        "rows_requested": args.rows,
        "rows": result.rows,
        "files": result.files,
        "seconds": round(elapsed, 2),
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {out}: {result.rows:,} rows, {customers:,} customers, {result.files} files "
        f"in {elapsed:.1f} s; peak RSS {_peak_rss_mib():.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
