"""Peer: SmartNoise SQL (smartnoise-sql 1.0.10, pandas engine = in-memory SQLite).

smartnoise-sql 1.0.10 requires opendp>=0.14.1,<0.15, so it lives in its own
venv (bench/.peers-venv/smartnoise_sql) with opendp 0.14.x.

Customer-level privacy through the table metadata:
  row_privacy=False, customer_id: private_id=True   (privacy unit = customer)
  max_ids=R (Q1-Q3) / G=1 (Q4, Q5), sample_max_ids=True
      -> the rewriter keeps at most max_ids rows per customer
         (ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY RANDOM()) <= max_ids),
         after the WHERE clause, and scales sensitivity by max_ids.
         With max_ids=1 a customer lands in exactly one group, so
         COUNT(DISTINCT customer_id) per group is the G = 1 bound.
  amount: lower=0, upper=100, clamp_columns=True     (clamping)
  censor_dims=False, delta=0                         (pure DP, Laplace / discrete Laplace)
Budget: SmartNoise's epsilon is *per statistic*; the runner calibrates
Privacy(epsilon=e) so that reader.get_privacy_cost(query) totals the requested
epsilon (AVG = SUM + COUNT -> e = eps/2; Q5 = two queries at eps/2).
Differences: no public key-set (subqueries/joins with a key table are
disabled), so only groups present in the data are released and the key set
itself is not protected (censor_dims=False); missing groups are reported as null.
"""
from __future__ import annotations

import time

_t = time.perf_counter()
import pyarrow.parquet as pq  # noqa: E402
import snsql  # noqa: E402
from snsql import Privacy  # noqa: E402

import common as C  # noqa: E402

IMPORT_S = time.perf_counter() - _t

TABLE = "shop.purchases"
WHERE = ("WHERE opted_in = TRUE AND category NOT IN ("
         + ", ".join(f"'{c}'" for c in C.SENSITIVE) + ")")


def metadata(max_ids: int, rows: int) -> dict:
    return {"collections": {"shop": {"purchases": {
        "rows": rows, "row_privacy": False, "max_ids": max_ids, "sample_max_ids": True,
        "censor_dims": False, "clamp_counts": False, "clamp_columns": True,
        "customer_id": {"type": "int", "private_id": True},
        "region": {"type": "string"}, "age_band": {"type": "string"},
        "opted_in": {"type": "boolean"}, "purchased_on": {"type": "datetime"},
        "category": {"type": "string"},
        "amount": {"type": "float", "lower": C.LOWER, "upper": C.UPPER},
    }}}}


SQL = {
    "Q1": f"SELECT region, COUNT(*) AS value FROM {TABLE} {WHERE} GROUP BY region",
    "Q2": (f"SELECT region, SUM(amount) AS value FROM {TABLE} {WHERE} "
           "AND category = 'snacks' GROUP BY region"),
    "Q3": f"SELECT region, AVG(amount) AS value FROM {TABLE} {WHERE} GROUP BY region",
    "Q4": (f"SELECT region, age_band, COUNT(DISTINCT customer_id) AS value FROM {TABLE} "
           f"{WHERE} GROUP BY region, age_band"),
    "Q5num": (f"SELECT region, COUNT(DISTINCT customer_id) AS value FROM {TABLE} {WHERE} "
              "AND category = 'snacks' GROUP BY region"),
    "Q5den": f"SELECT region, COUNT(DISTINCT customer_id) AS value FROM {TABLE} {WHERE} GROUP BY region",
}


def calibrated_reader(df, sql: str, eps: float, max_ids: int, rows: int):
    """A PrivateReader whose per-statistic epsilon makes `sql` cost `eps` in total.
    The cost does not depend on the data, so it is probed on a one-row frame."""
    meta = metadata(max_ids, rows)
    probe = snsql.from_df(df.iloc[:1], privacy=Privacy(epsilon=1.0, delta=0.0), metadata=meta)
    cost, _ = probe.get_privacy_cost(sql)
    per_stat = eps / float(cost)
    return snsql.from_df(df, privacy=Privacy(epsilon=per_stat, delta=0.0), metadata=meta), per_stat


def run_sql(df, sql, eps, max_ids, rows):
    reader, per_stat = calibrated_reader(df, sql, eps, max_ids, rows)
    acc = reader.get_simple_accuracy(sql, 0.05)
    out = reader.execute_df(sql)
    cost = reader.odometer.spent if hasattr(reader, "odometer") else None
    return out.to_dict("records"), {
        "epsilon_per_statistic": per_stat, "max_ids": max_ids,
        "accuracy_95_per_column": [C._num(a) for a in acc],
        "spent": [C._num(x) for x in cost] if cost is not None else None,
    }


def main():
    args = C.parse_args("smartnoise_sql")
    files = C.parquet_files(args.data)
    q = args.query

    def setup():
        df = pq.read_table(files).to_pandas()
        return {"df": df, "rows": len(df)}

    def one_rep(state, i):
        df, rows = state["df"], state["rows"]
        if q in ("Q1", "Q2", "Q3"):
            res, acc = run_sql(df, SQL[q], args.epsilon, C.R, rows)
        elif q == "Q4":
            res, acc = run_sql(df, SQL[q], args.epsilon, C.G, rows)
        else:
            num, an = run_sql(df, SQL["Q5num"], args.epsilon / 2, C.G, rows)
            den, ad = run_sql(df, SQL["Q5den"], args.epsilon / 2, C.G, rows)
            nd = {r["region"]: r["value"] for r in num}
            dd = {r["region"]: r["value"] for r in den}
            res = []
            for r in C.REGIONS:
                n, d = nd.get(r), dd.get(r)
                rate = None if n is None or d is None or d <= 0 else min(1.0, max(0.0, n / d))
                res.append({"region": r, "value": rate, "numerator": n, "denominator": d})
            acc = {"numerator": an, "denominator": ad}
        return {"rows": C.fill_domain(q, res, fill=None), "scale_or_accuracy": acc}

    notes = {
        "Q1": f"COUNT(*) GROUP BY region, max_ids={C.R}",
        "Q2": f"SUM(amount) over snacks GROUP BY region, max_ids={C.R}, amount clamped [0,100]",
        "Q3": (f"AVG(amount) = noisy SUM / noisy COUNT, max_ids={C.R}; SmartNoise charges eps per "
               "statistic, so each gets eps/2 (calibrated with get_privacy_cost)"),
        "Q4": (f"COUNT(DISTINCT customer_id) GROUP BY region, age_band with max_ids={C.G}: one sampled "
               "row per customer = G=1 group per customer (row_num <= 1)"),
        "Q5": (f"two queries at eps/2: COUNT(DISTINCT customer_id) with/without category='snacks', "
               f"max_ids={C.G} (one sampled row per customer *after* the WHERE); rate = num/den clipped [0,1]"),
    }
    C.run("smartnoise_sql", C.dist_version("smartnoise-sql", "opendp", "pandas"), args,
          setup, one_rep, supported=True,
          note=notes[q] + ("; censor_dims=False, delta=0 (pure DP) but no public key-set: keys come "
                           "from the data and are not protected, absent groups are null; "
                           "scale_or_accuracy = get_simple_accuracy(alpha=0.05); "
                           "each rep builds a fresh PrivateReader (pandas df loaded into SQLite)"),
          import_seconds=IMPORT_S)


if __name__ == "__main__":
    main()
