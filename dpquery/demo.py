"""Deterministic synthetic demo data: the ``purchases`` table.

A made-up grocery chain ("ShopSense") in southern Michigan, 2016-2025, one row
per purchased item on a loyalty card.  The data is synthetic; the random
generator used here is numpy's ordinary PCG64 and has nothing to do with the
noise used for differential privacy.

``write_demo(out_dir, customers, seed, chunk_customers)`` writes a folder of
Parquet files ``part-00000.parquet``, ``part-00001.parquet``, ... (one per chunk
of ``chunk_customers`` customers).  Each chunk draws from its own generator,
``np.random.default_rng([seed, chunk])``, so the output is byte-identical for the
same ``(customers, seed, chunk_customers)`` (and the same library versions), and a
chunk is generated and written in bounded blocks of rows, so memory does not
grow with the table size.  Different ``chunk_customers`` give different (equally
valid) data.

Columns (exact names and polars dtypes)::

    customer_id   Int64    1..customers, one per customer
    region        String   home county (population-weighted); ~10% of a
                           customer's purchases are in a second county
    age_band      String   fixed per customer
    opted_in      Boolean  fixed per customer, ~85% true
    purchased_on  Date     2016-01-01 .. 2025-12-31, after the customer joined
    category      String   12 ordinary + 4 sensitive categories
    amount        Float64  USD, rounded to cents, log-normal per category, > 0

The value domains below must match ``config.toml``
(``[datasets.purchases.columns.*]``); ``tests/test_demo.py`` checks that.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "AGE_BANDS",
    "ARROW_SCHEMA",
    "CATEGORIES",
    "DemoSummary",
    "FIRST_DAY",
    "LAST_DAY",
    "REGIONS",
    "ROWS_PER_CUSTOMER",
    "SCHEMA",
    "SENSITIVE_CATEGORIES",
    "customers_for_rows",
    "rows_estimate",
    "write_demo",
]

# --------------------------------------------------------------------------
# Domains (keep in sync with config.toml)
# --------------------------------------------------------------------------

# County -> relative population (2020 census, thousands).  Wayne and Oakland
# are the largest, Hillsdale the smallest.
_REGION_POPULATION: dict[str, float] = {
    "Washtenaw": 372,
    "Wayne": 1793,
    "Oakland": 1274,
    "Macomb": 881,
    "Monroe": 154,
    "Lenawee": 99,
    "Jackson": 160,
    "Livingston": 193,
    "Ingham": 284,
    "Hillsdale": 46,
    "Calhoun": 134,
    "Kalamazoo": 261,
}
REGIONS: tuple[str, ...] = tuple(_REGION_POPULATION)

# Age band -> share of loyalty-card holders.
_AGE_SHARE: dict[str, float] = {
    "18-24": 0.09,
    "25-34": 0.17,
    "35-44": 0.18,
    "45-54": 0.18,
    "55-64": 0.18,
    "65+": 0.20,
}
AGE_BANDS: tuple[str, ...] = tuple(_AGE_SHARE)

# Category -> (base frequency, taste shape, median amount USD, log sd of amount).
# The taste shape is the gamma shape of a customer's multiplier for the
# category (mean 1): small shape = most customers rarely buy it, a few buy a
# lot (baby, tobacco); large shape = everybody buys it at about the base rate.
_CATEGORY_SPEC: dict[str, tuple[float, float, float, float]] = {
    "produce": (0.170, 4.0, 5.50, 0.60),
    "dairy": (0.140, 4.0, 4.80, 0.55),
    "bakery": (0.080, 2.5, 4.50, 0.55),
    "meat": (0.080, 2.0, 13.0, 0.65),
    "seafood": (0.025, 1.0, 16.0, 0.65),
    "snacks": (0.090, 1.2, 4.20, 0.60),
    "beverages": (0.090, 2.0, 5.50, 0.65),
    "frozen": (0.070, 2.0, 6.50, 0.60),
    "health_food": (0.040, 0.8, 8.00, 0.65),
    "household": (0.060, 2.5, 8.50, 0.70),
    "baby": (0.020, 0.25, 15.0, 0.65),
    "personal_care": (0.040, 2.0, 7.50, 0.65),
    # sensitive: present in the data, filtered out by the service's policy
    "pharmacy": (0.030, 0.6, 14.0, 0.80),
    "alcohol": (0.035, 0.5, 16.0, 0.65),
    "tobacco": (0.015, 0.12, 10.0, 0.45),
    "prophylactics": (0.004, 0.3, 11.0, 0.40),
}
CATEGORIES: tuple[str, ...] = tuple(_CATEGORY_SPEC)[:12]
SENSITIVE_CATEGORIES: tuple[str, ...] = tuple(_CATEGORY_SPEC)[12:]
_ALL_CATEGORIES: tuple[str, ...] = CATEGORIES + SENSITIVE_CATEGORIES

FIRST_DAY = _dt.date(2016, 1, 1)
LAST_DAY = _dt.date(2025, 12, 31)
_EPOCH = _dt.date(1970, 1, 1)
_FIRST = (FIRST_DAY - _EPOCH).days
_NDAYS = (LAST_DAY - FIRST_DAY).days + 1  # 3653

SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "region": pl.String(),
    "age_band": pl.String(),
    "opted_in": pl.Boolean(),
    "purchased_on": pl.Date(),
    "category": pl.String(),
    "amount": pl.Float64(),
}

# Arrow schema of the written files (plain strings, no dictionary/categorical).
ARROW_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("region", pa.large_string()),
        ("age_band", pa.large_string()),
        ("opted_in", pa.bool_()),
        ("purchased_on", pa.date32()),
        ("category", pa.large_string()),
        ("amount", pa.float64()),
    ]
)

# --------------------------------------------------------------------------
# Behavioural parameters
# --------------------------------------------------------------------------

_OPT_IN = 0.85
_SECOND_COUNTY_SHARE = 0.10  # mean share of a customer's rows in a 2nd county
_LAUNCH_JOIN = 0.35  # share of customers who joined in the first 60 days
_RATE_MEDIAN = 3.82  # purchases per year of membership: log-normal median ...
_RATE_SIGMA = 1.3  # ... and log sd (heavy tail)
_MAX_ROWS = 5000  # cap on rows per customer
_MAX_AMOUNT = 999.99
_BLOCK_ROWS = 1 << 18  # ~262k rows generated and written at a time (one row group)

# Mean rows per customer: 60.03 measured over 2M customers (seed 7, chunks of
# 200k); the distribution of counts does not depend on seed or chunk size.
ROWS_PER_CUSTOMER = 60.0

# Multipliers on the snack / health-food propensity, so that "snack purchase
# rate by county and age band" shows structure.  Index order = AGE_BANDS.
_AGE_SNACKS = np.array([1.8, 1.4, 1.1, 0.9, 0.7, 0.55])
_AGE_HEALTH = np.array([0.8, 1.3, 1.25, 1.0, 0.9, 0.75])
_AGE_BABY = np.array([0.6, 2.6, 1.6, 0.4, 0.15, 0.1])
_AGE_ALCOHOL = np.array([0.6, 1.2, 1.1, 1.0, 1.0, 0.8])
_AGE_PHARMACY = np.array([0.4, 0.6, 0.8, 1.0, 1.4, 2.0])
# Index order = REGIONS.
_REGION_SNACKS = np.array(
    [0.70, 1.35, 0.90, 1.30, 1.15, 1.20, 1.15, 0.90, 0.85, 1.50, 1.30, 0.95]
)
_REGION_HEALTH = np.array(
    [2.00, 0.80, 1.35, 0.85, 0.80, 0.75, 0.85, 1.10, 1.40, 0.60, 0.80, 1.30]
)

_IDX = {c: i for i, c in enumerate(_ALL_CATEGORIES)}


@dataclass(frozen=True)
class DemoSummary:
    """What ``write_demo`` wrote."""

    customers: int
    rows: int
    files: int


def rows_estimate(customers: int) -> int:
    """Expected number of rows for ``customers`` customers (about 60 each)."""
    return round(customers * ROWS_PER_CUSTOMER)


def customers_for_rows(rows: int) -> int:
    """Number of customers whose demo table has about ``rows`` rows."""
    return max(1, round(rows / ROWS_PER_CUSTOMER))


def _validate(customers: int, seed: int, chunk_customers: int) -> None:
    for name, value, low in (
        ("customers", customers, 1),
        ("seed", seed, 0),
        ("chunk_customers", chunk_customers, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_demo(
    out_dir: Path,
    customers: int,
    seed: int = 7,
    chunk_customers: int = 200_000,
) -> DemoSummary:
    """Write the ``purchases`` demo table to ``out_dir/part-NNNNN.parquet``.

    Creates ``out_dir`` if needed.  Existing ``part-*.parquet`` files in it are
    replaced (stale parts from an earlier, larger run are deleted); no other
    file is touched.  Each part is written to a temporary name first and
    renamed when complete.
    """
    _validate(customers, seed, chunk_customers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(customers / chunk_customers)
    wanted = {_part_name(i) for i in range(n_chunks)}
    for stale in out_dir.glob("part-*.parquet"):
        if stale.name not in wanted:
            stale.unlink()

    rows = 0
    for chunk in range(n_chunks):
        first = chunk * chunk_customers
        n = min(chunk_customers, customers - first)
        final = out_dir / _part_name(chunk)
        tmp = out_dir / (final.name + ".tmp")
        try:
            rows += _write_chunk(tmp, seed, chunk, first, n)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return DemoSummary(customers=customers, rows=rows, files=n_chunks)


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


@dataclass
class _Customers:
    """Per-customer attributes of one chunk (indices are chunk-local)."""

    first_id: int
    home: np.ndarray  # region index
    second: np.ndarray  # region index of the second county (!= home)
    second_share: np.ndarray  # share of rows bought in the second county
    age: np.ndarray  # age band index
    opted_in: np.ndarray  # bool
    join: np.ndarray  # day offset from FIRST_DAY
    spend: np.ndarray  # per-customer amount multiplier
    cat_cum: np.ndarray  # (n, 16) cumulative category probabilities
    counts: np.ndarray  # rows per customer


def _draw_customers(rng: np.random.Generator, first_id: int, n: int) -> _Customers:
    pop = np.array(list(_REGION_POPULATION.values()))
    pop = pop / pop.sum()
    home = rng.choice(len(REGIONS), size=n, p=pop)
    second = rng.choice(len(REGIONS), size=n, p=pop)
    clash = second == home
    second[clash] = (home[clash] + 1 + rng.integers(0, len(REGIONS) - 1, clash.sum())) % len(
        REGIONS
    )
    second_share = rng.beta(1.0, 1.0 / _SECOND_COUNTY_SHARE - 1.0, size=n)

    age_p = np.array(list(_AGE_SHARE.values()))
    age = rng.choice(len(AGE_BANDS), size=n, p=age_p / age_p.sum())
    opted_in = rng.random(n) < _OPT_IN

    launch = rng.random(n) < _LAUNCH_JOIN
    join = np.where(
        launch, rng.integers(0, 60, size=n), rng.integers(0, _NDAYS - 30, size=n)
    )
    years = (_NDAYS - join) / 365.25
    rate = np.exp(np.log(_RATE_MEDIAN) + _RATE_SIGMA * rng.standard_normal(n))
    counts = np.clip(np.rint(rate * years), 1, _MAX_ROWS).astype(np.int64)
    spend = np.exp(0.25 * rng.standard_normal(n))

    spec = np.array(list(_CATEGORY_SPEC.values()))
    base, shape = spec[:, 0], spec[:, 1]
    weights = base * rng.gamma(shape, 1.0 / shape, size=(n, len(base)))
    weights[:, _IDX["snacks"]] *= _AGE_SNACKS[age] * _REGION_SNACKS[home]
    weights[:, _IDX["health_food"]] *= _AGE_HEALTH[age] * _REGION_HEALTH[home]
    weights[:, _IDX["baby"]] *= _AGE_BABY[age]
    weights[:, _IDX["alcohol"]] *= _AGE_ALCOHOL[age]
    weights[:, _IDX["pharmacy"]] *= _AGE_PHARMACY[age]
    weights += 1e-12  # never an all-zero row
    cat_cum = np.cumsum(weights, axis=1)
    cat_cum /= cat_cum[:, -1:]
    cat_cum[:, -1] = 1.0

    return _Customers(
        first_id, home, second, second_share, age, opted_in, join, spend, cat_cum, counts
    )


def _blocks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Split customers [0, n) into consecutive ranges of about _BLOCK_ROWS rows."""
    ends = np.cumsum(counts)
    out, start, done = [], 0, 0
    n = len(counts)
    while start < n:
        stop = int(np.searchsorted(ends, done + _BLOCK_ROWS, side="right"))
        stop = min(max(stop, start + 1), n)
        out.append((start, stop))
        done = int(ends[stop - 1])
        start = stop
    return out


_STRINGS = {
    "region": pl.Series(REGIONS, dtype=pl.String),
    "age_band": pl.Series(AGE_BANDS, dtype=pl.String),
    "category": pl.Series(_ALL_CATEGORIES, dtype=pl.String),
}
_AMOUNT_LOG_MEDIAN = np.log(np.array([s[2] for s in _CATEGORY_SPEC.values()]))
_AMOUNT_LOG_SD = np.array([s[3] for s in _CATEGORY_SPEC.values()])


def _draw_rows(rng: np.random.Generator, c: _Customers, a: int, b: int) -> pl.DataFrame:
    counts = c.counts[a:b]
    cust = np.repeat(np.arange(a, b), counts)  # chunk-local customer index
    rows = len(cust)

    # category: search each row's uniform in its customer's cumulative
    # distribution, all customers at once (customer k's cdf shifted by k)
    ncat = c.cat_cum.shape[1]
    local = cust - a
    flat = (c.cat_cum[a:b] + np.arange(b - a)[:, None]).ravel()
    pos = np.searchsorted(flat, local + rng.random(rows), side="right")
    category = np.minimum(pos - local * ncat, ncat - 1)

    day = c.join[cust] + rng.integers(0, _NDAYS - c.join[cust])
    in_second = rng.random(rows) < c.second_share[cust]
    region = np.where(in_second, c.second[cust], c.home[cust])

    log_amount = _AMOUNT_LOG_MEDIAN[category] + _AMOUNT_LOG_SD[category] * rng.standard_normal(
        rows
    )
    amount = np.round(np.exp(log_amount) * c.spend[cust], 2)
    np.clip(amount, 0.01, _MAX_AMOUNT, out=amount)

    # rows of a customer in date order
    order = np.argsort(cust * _NDAYS + day, kind="stable")
    cust, day, region, category, amount = (
        x[order] for x in (cust, day, region, category, amount)
    )

    return pl.DataFrame(
        [
            pl.Series("customer_id", cust + c.first_id, dtype=pl.Int64),
            _STRINGS["region"].gather(pl.Series(region, dtype=pl.UInt32)).alias("region"),
            _STRINGS["age_band"]
            .gather(pl.Series(c.age[cust], dtype=pl.UInt32))
            .alias("age_band"),
            pl.Series("opted_in", c.opted_in[cust], dtype=pl.Boolean),
            pl.Series("purchased_on", (day + _FIRST).astype(np.int32), dtype=pl.Int32).cast(
                pl.Date
            ),
            _STRINGS["category"]
            .gather(pl.Series(category, dtype=pl.UInt32))
            .alias("category"),
            pl.Series("amount", amount, dtype=pl.Float64),
        ]
    )


def _write_chunk(path: Path, seed: int, chunk: int, first: int, n: int) -> int:
    rng = np.random.default_rng([seed, chunk])
    c = _draw_customers(rng, first + 1, n)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for a, b in _blocks(c.counts):
            df = _draw_rows(rng, c, a, b)
            table = df.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(ARROW_SCHEMA)
            del df
            if writer is None:
                writer = pq.ParquetWriter(path, ARROW_SCHEMA, compression="zstd")
            writer.write_table(table, row_group_size=table.num_rows)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows

