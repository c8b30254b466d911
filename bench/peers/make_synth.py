"""Small synthetic `purchases` table for developing the peer runners, used
until dpquery/demo.py (write_demo) exists.  Same schema:

  customer_id Int64, region String, age_band String, opted_in Boolean,
  purchased_on Date (2016-2025), category String (16 values), amount Float64

region / age_band / opted_in are attributes of the customer (constant per
customer_id).  Rows per customer are heavy-tailed so that some customers
exceed R = 200 and truncation is exercised.  Amounts are log-normal and a few
exceed 100 so clamping is exercised.

usage: python bench/peers/make_synth.py OUT_DIR [--rows 100000] [--seed 7] [--files 4]
Needs numpy + pyarrow (any of the peer venvs has them).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import AGE_BANDS, CATEGORIES, REGIONS, SENSITIVE


def make(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    # rows per customer: geometric-ish with a heavy tail (mean ~ 25)
    counts = []
    total = 0
    while total < rows:
        c = int(rng.pareto(1.6) * 12) + 1
        c = min(c, 1500)
        c = min(c, rows - total)
        counts.append(c)
        total += c
    n_cust = len(counts)
    cust_ids = rng.permutation(np.arange(100_000, 100_000 + 3 * n_cust))[:n_cust].astype(np.int64)
    cust_region = rng.choice(len(REGIONS), n_cust, p=_weights(len(REGIONS), rng))
    cust_age = rng.choice(len(AGE_BANDS), n_cust)
    cust_opt = rng.random(n_cust) < 0.8
    counts = np.array(counts)
    idx = np.repeat(np.arange(n_cust), counts)
    cats = CATEGORIES + SENSITIVE
    p = np.array([8, 7, 6, 6, 2, 6, 7, 5, 2, 6, 2, 4] + [2, 2, 1, 0.5], float)
    cat = rng.choice(len(cats), rows, p=p / p.sum())
    start = dt.date(2016, 1, 1).toordinal()
    end = dt.date(2025, 12, 31).toordinal()
    days = rng.integers(start, end + 1, rows) - dt.date(1970, 1, 1).toordinal()
    amount = np.round(rng.lognormal(2.7, 0.9, rows), 2)
    table = pa.table({
        "customer_id": pa.array(cust_ids[idx], pa.int64()),
        "region": pa.array(np.array(REGIONS, dtype=object)[cust_region[idx]], pa.string()),
        "age_band": pa.array(np.array(AGE_BANDS, dtype=object)[cust_age[idx]], pa.string()),
        "opted_in": pa.array(cust_opt[idx], pa.bool_()),
        "purchased_on": pa.array(days.astype(np.int32), pa.date32()),
        "category": pa.array(np.array(cats, dtype=object)[cat], pa.string()),
        "amount": pa.array(amount, pa.float64()),
    })
    # shuffle rows so files are not sorted by customer
    perm = rng.permutation(rows)
    return table.take(pa.array(perm)), n_cust


def _weights(n, rng):
    w = rng.random(n) + 0.3
    return w / w.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--files", type=int, default=4)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    table, n_cust = make(a.rows, a.seed)
    step = -(-a.rows // a.files)
    for i in range(a.files):
        pq.write_table(table.slice(i * step, step),
                       os.path.join(a.out_dir, f"part-{i:03d}.parquet"))
    print(f"wrote {a.rows} rows, {n_cust} customers, {a.files} files to {a.out_dir}")


if __name__ == "__main__":
    main()
