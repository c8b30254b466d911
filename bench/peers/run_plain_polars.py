"""Baseline peer: the same contribution-bounded queries in plain Polars, no noise.

Bounding is the one the DP peers apply: public filters, then at most R rows per
customer (a seeded random sample of each customer's rows), amounts clamped to
[0, 100]; for Q4/Q5 each customer is also kept in at most G = 1 group.  The
output also carries `exact_unbounded` (no truncation, no clamping) so the
caller can separate bias from noise.

Runs in bench/.peers-venv/plain_polars (a link to the opendp_context venv:
the same polars 1.36.1 that opendp 0.16.0 pins).
"""
from __future__ import annotations

import time

_t = time.perf_counter()
import polars as pl  # noqa: E402

import common as C  # noqa: E402

IMPORT_S = time.perf_counter() - _t
SEED = 20240601


def base(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.filter(pl.col("opted_in") & ~pl.col("category").is_in(C.SENSITIVE))


def truncate_rows(lf: pl.LazyFrame, seed: int) -> pl.LazyFrame:
    return lf.filter(pl.int_range(pl.len()).shuffle(seed=seed).over("customer_id") < C.R)


def truncate_groups(lf: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    # keep the customer's G lowest-ranked groups (dense rank starts at 1)
    rank = pl.struct(*by).rank("dense").over("customer_id")
    return lf.filter(rank <= C.G)


def query(lf: pl.LazyFrame, q: str, bounded: bool, seed: int) -> pl.DataFrame:
    lf = base(lf)
    if bounded and q in ("Q1", "Q2", "Q3"):
        # distinct-customer queries (Q4, Q5) are bounded by G groups per
        # customer (one row per customer and group), not by R rows
        lf = truncate_rows(lf, seed)
    amount = pl.col("amount").clip(C.LOWER, C.UPPER) if bounded else pl.col("amount")
    if q == "Q1":
        return lf.group_by("region").agg(value=pl.len()).collect()
    if q == "Q2":
        return (lf.filter(pl.col("category") == "snacks")
                .group_by("region").agg(value=amount.sum()).collect())
    if q == "Q3":
        return lf.group_by("region").agg(value=amount.mean()).collect()
    if q == "Q4":
        if bounded:
            lf = truncate_groups(lf, ["region", "age_band"])
        return (lf.group_by("region", "age_band")
                .agg(value=pl.col("customer_id").n_unique()).collect())
    if q == "Q5":
        if bounded:
            lf = truncate_groups(lf, ["region"])
        return (lf.group_by("region").agg(
            numerator=pl.col("customer_id").filter(pl.col("category") == "snacks").n_unique(),
            denominator=pl.col("customer_id").n_unique(),
        ).with_columns(value=pl.col("numerator") / pl.col("denominator")).collect())
    raise ValueError(q)


def main():
    args = C.parse_args("plain_polars")
    files = C.parquet_files(args.data)

    def setup():
        return {"df": pl.read_parquet(files)}

    def one_rep(state, i):
        df = query(state["df"].lazy(), args.query, True, SEED)
        return {"rows": C.fill_domain(args.query, df.to_dicts(), fill=0)}

    extra = {}
    try:
        df = query(pl.scan_parquet(files), args.query, False, SEED)
        extra["exact_unbounded"] = C.fill_domain(args.query, df.to_dicts(), fill=0)
    except Exception as e:  # pragma: no cover
        extra["exact_unbounded_error"] = repr(e)
    C.run("plain_polars", C.dist_version("polars"), args, setup, one_rep,
          supported=True,
          note=("no noise; same public filters and contribution bounding as the DP peers "
                f"(<= {C.R} rows per customer, seeded random sample; amount clamped to "
                f"[{C.LOWER:g}, {C.UPPER:g}]; Q4/Q5: no row cap, <= {C.G} group per customer). "
                "results are deterministic (fixed sampling seed); exact_unbounded has no "
                "truncation or clamping"),
          import_seconds=IMPORT_S, extra=extra)


if __name__ == "__main__":
    main()
