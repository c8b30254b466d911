"""Peer: OpenDP Context API (opendp[polars] 0.16.0, the version dpquery uses).

Customer-level privacy: dp.unit_of(contributions=1, identifier="customer_id")
(one customer added/removed = symmetric id distance 1), pure DP via
dp.loss_of(epsilon=eps).  Bounds are *enforced* inside the query plan:
  Q1-Q3  .truncate_per_group(R)            at most R rows per customer
  Q4/Q5  .truncate_per_group(1, by=keys)   one row per customer and group
         .truncate_num_groups(G + 1, by=keys, keep="first")
         -- opendp 0.16.0 filters on dense rank (which starts at 1) `< k`, so
            k = G + 1 keeps G groups but is *accounted* as G + 1 groups; k = G
            would keep nothing, and keep="sample" fails on polars 1.36.1
            (duplicate struct field names).  Noise for Q4/Q5 is therefore 2x
            what a tight G = 1 bound would give.
Group keys are public: .with_keys(keyset) (left join on the key-set), so no
threshold / delta is needed.  Float sums need a public Margin(max_length):
the next power of ten >= the table's row count (parquet metadata).
Public filters use chained `!=` (opendp 0.16 rejects is_in / all_horizontal).
"""
from __future__ import annotations

import functools
import operator
import time

_t = time.perf_counter()
import opendp.prelude as dp  # noqa: E402
from opendp.accuracy import summarize_polars_measurement  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import common as C  # noqa: E402

IMPORT_S = time.perf_counter() - _t
dp.enable_features("contrib")

NOT_SENSITIVE = functools.reduce(operator.and_, [pl.col("category") != s for s in C.SENSITIVE])
PUBLIC_FILTER = pl.col("opted_in") & NOT_SENSITIVE


def max_length_bound(files) -> int:
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    b = 10
    while b < n:
        b *= 10
    return b


def keyset(q: str) -> pl.DataFrame:
    return pl.DataFrame(C.domain(q))


def make_context(lf: pl.LazyFrame, eps: float, n_queries: int, max_length: int):
    return dp.Context.compositor(
        data=lf,
        privacy_unit=dp.unit_of(contributions=1, identifier="customer_id"),
        privacy_loss=dp.loss_of(epsilon=eps),
        split_evenly_over=n_queries,
        margins=[dp.polars.Margin(by=[], max_length=max_length)],
    )


def distinct_per_group(ctx, by: list[str], snacks_only: bool):
    q = ctx.query().filter(PUBLIC_FILTER)
    if snacks_only:
        q = q.filter(pl.col("category") == "snacks")
    return (q.truncate_per_group(1, by=by)
             .truncate_num_groups(C.G + 1, by=by, keep="first")
             .group_by(by).agg(dp.len(signed=True).alias("value"))
             .with_keys(keyset("Q4" if len(by) == 2 else "Q1")))


def release(ctx, query):
    """Resolve once (the binary search for the noise scale), report the
    library's own 95% accuracy, then spend the budget.  (query.summarize()
    followed by query.release() would run the scale search twice.)"""
    m = query.resolve()
    s = summarize_polars_measurement(m, 0.05)
    acc = [{k: C._num(v) if not isinstance(v, str) else v for k, v in r.items()}
           for r in s.to_dicts()]
    return ctx(m).collect().to_dicts(), acc


def one_query(lf: pl.LazyFrame, q: str, eps: float, max_length: int):
    """Build a fresh context (fresh budget) and release query q once."""
    if q in ("Q1", "Q2", "Q3"):
        ctx = make_context(lf, eps, 1, max_length)
        base = ctx.query().filter(PUBLIC_FILTER)
        if q == "Q2":
            base = base.filter(pl.col("category") == "snacks")
        base = base.truncate_per_group(C.R)
        amount = pl.col("amount").fill_null(0.0)
        agg = {"Q1": dp.len(signed=True),
               "Q2": amount.dp.sum((C.LOWER, C.UPPER)),
               "Q3": amount.dp.mean((C.LOWER, C.UPPER))}[q].alias("value")
        query = base.group_by("region").agg(agg).with_keys(keyset(q))
        return release(ctx, query)
    if q == "Q4":
        ctx = make_context(lf, eps, 1, max_length)
        query = distinct_per_group(ctx, ["region", "age_band"], False)
        return release(ctx, query)
    if q == "Q5":
        ctx = make_context(lf, eps, 2, max_length)   # eps/2 each
        qn = distinct_per_group(ctx, ["region"], True)
        qd = distinct_per_group(ctx, ["region"], False)
        rn, an = release(ctx, qn)
        rd, ad = release(ctx, qd)
        acc = {"numerator": an, "denominator": ad}
        num = {r["region"]: r["value"] for r in rn}
        den = {r["region"]: r["value"] for r in rd}
        rows = []
        for r in C.REGIONS:
            n, d = num.get(r), den.get(r)
            rate = None if n is None or d is None or d <= 0 else min(1.0, max(0.0, n / d))
            rows.append({"region": r, "value": rate, "numerator": n, "denominator": d})
        return rows, acc
    raise ValueError(q)


def main():
    args = C.parse_args("opendp_context")
    files = C.parquet_files(args.data)

    def setup():
        df = pl.read_parquet(files)
        return {"lf": df.lazy(), "max_length": max_length_bound(files)}

    def one_rep(state, i):
        rows, acc = one_query(state["lf"], args.query, args.epsilon, state["max_length"])
        return {"rows": C.fill_domain(args.query, rows), "scale_or_accuracy": acc}

    notes = {
        "Q1": "dp.len per region; truncate_per_group(R); pure DP Laplace",
        "Q2": "dp.sum((0,100)) per region over snacks rows; truncate_per_group(R)",
        "Q3": "dp.mean((0,100)) per region = noisy sum / noisy len, eps split by opendp",
        "Q4": ("dp.len per (region, age_band) after one row per customer and group; "
               "num_groups truncation accounted as G+1 = 2 (opendp 0.16 off-by-one), so noise is 2x"),
        "Q5": ("two releases at eps/2 each (numerator: snack buyers, denominator: customers), "
               "distinct via one row per customer and region; num_groups accounted as G+1 = 2; "
               "rate = num/den clipped to [0,1]"),
    }
    C.run("opendp_context", C.dist_version("opendp", "polars"), args,
          setup, one_rep, supported=True,
          note=notes[args.query] + "; keys public via with_keys; scale_or_accuracy = "
                                   "summarize_polars_measurement(m, alpha=0.05) (95% accuracy)",
          import_seconds=IMPORT_S)


if __name__ == "__main__":
    main()
