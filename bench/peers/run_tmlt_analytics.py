"""Peer: Tumult Analytics (tmlt.analytics 0.21.0 on pyspark 3.5, local[2], Java 17).

On Python 3.11 tmlt.analytics 0.21.0 requires pandas<2, pyspark<3.6 and
tmlt.core<0.20 (numpy<2), so it lives in its own venv
(bench/.peers-venv/tmlt_analytics).

Customer-level privacy: Session.from_dataframe(..., protected_change=
AddRowsWithID("customer_id"), privacy_budget=PureDPBudget(eps)); every query
spends PureDPBudget(eps) (Q5: two queries at eps/2).  Bounds are enforced:
  Q1-Q3  .enforce(MaxRowsPerID(R))                        at most R rows per customer
  Q4     .enforce(MaxRowsPerID(1)) + count_distinct(["customer_id"])
         -- MaxGroupsPerID takes ONE grouping column, and the (region, age_band)
            group-by has two, so one row per customer is the G = 1 bound here
  Q5     .enforce(MaxGroupsPerID("region", G)) + count_distinct(["customer_id"])
         -- Tumult rewrites this to MaxRowsPerGroupPerID("region", 1): stability G
Group keys are public: groupby(KeySet.from_dict(...)).  Clamping: sum/average
take low=0, high=100.  Noise: PureDP -> geometric (counts) / Laplace (sums).
scale_or_accuracy = session._noise_info(query, budget) (private API: mechanism
and noise parameter).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time

_t = time.perf_counter()
from pyspark.sql import SparkSession  # noqa: E402
from tmlt.analytics import (  # noqa: E402
    AddRowsWithID,
    KeySet,
    MaxGroupsPerID,
    MaxRowsPerID,
    PureDPBudget,
    QueryBuilder,
    Session,
)

import common as C  # noqa: E402

IMPORT_S = time.perf_counter() - _t

SRC = "purchases"
PUBLIC_FILTER = ("opted_in = 1 AND category NOT IN ("
                 + ", ".join(f"'{c}'" for c in C.SENSITIVE) + ")")


def spark_session() -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    # keep Spark's / Tumult's temp tables out of the working tree
    wh = os.environ.get("PEER_SPARK_WAREHOUSE") or tempfile.mkdtemp(prefix="peers-spark-wh-")
    atexit.register(shutil.rmtree, wh, True)
    return (SparkSession.builder.master("local[2]")
            .config("spark.sql.warehouse.dir", wh)
            .config("spark.local.dir", wh)
            .appName("dpquery-peer-tmlt")
            .config("spark.driver.memory", os.environ.get("PEER_SPARK_DRIVER_MEMORY", "6g"))
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate())


def keys(q: str) -> KeySet:
    if q == "Q4":
        return KeySet.from_dict({"region": C.REGIONS, "age_band": C.AGE_BANDS})
    return KeySet.from_dict({"region": C.REGIONS})


def build(q: str, part: str = ""):
    b = QueryBuilder(SRC).filter(PUBLIC_FILTER)
    if q == "Q2" or part == "num":
        b = b.filter("category = 'snacks'")
    if q in ("Q1", "Q2", "Q3"):
        g = b.enforce(MaxRowsPerID(C.R)).groupby(keys(q))
        if q == "Q1":
            return g.count(name="value")
        if q == "Q2":
            return g.sum("amount", low=C.LOWER, high=C.UPPER, name="value")
        return g.average("amount", low=C.LOWER, high=C.UPPER, name="value")
    if q == "Q4":
        return (b.enforce(MaxRowsPerID(C.G)).groupby(keys(q))
                .count_distinct(["customer_id"], name="value"))
    if q == "Q5":
        return (b.enforce(MaxGroupsPerID("region", C.G)).groupby(keys(q))
                .count_distinct(["customer_id"], name="value"))
    raise ValueError(q)


def noise_info(sess, query, budget):
    try:
        return [{k: (v.name if hasattr(v, "name") else C._num(v)) for k, v in d.items()}
                for d in sess._noise_info(query, budget)]
    except Exception as e:  # private API; report rather than fail
        return f"unavailable: {e!r}"


def evaluate(sess, query, eps):
    budget = PureDPBudget(eps)
    info = noise_info(sess, query, budget)
    pdf = sess.evaluate(query, budget).toPandas()
    return pdf.to_dict("records"), info


def main():
    args = C.parse_args("tmlt_analytics")
    files = C.parquet_files(args.data)
    q = args.query

    def setup():
        spark = spark_session()
        from pyspark.sql import functions as F
        # Tumult rejects BooleanType columns: opted_in is cast to 0/1 integer
        sdf = (spark.read.parquet(*files)
               .withColumn("opted_in", F.col("opted_in").cast("int")).cache())
        sdf.count()
        return {"spark": spark, "sdf": sdf}

    def one_rep(state, i):
        sess = Session.from_dataframe(
            privacy_budget=PureDPBudget(args.epsilon), source_id=SRC,
            dataframe=state["sdf"], protected_change=AddRowsWithID("customer_id"))
        if q != "Q5":
            rows, info = evaluate(sess, build(q), args.epsilon)
        else:
            num, ni = evaluate(sess, build(q, "num"), args.epsilon / 2)
            den, di = evaluate(sess, build(q, "den"), args.epsilon / 2)
            nd = {r["region"]: r["value"] for r in num}
            dd = {r["region"]: r["value"] for r in den}
            rows = []
            for r in C.REGIONS:
                n, d = nd.get(r), dd.get(r)
                rate = None if n is None or d is None or d <= 0 else min(1.0, max(0.0, n / d))
                rows.append({"region": r, "value": rate, "numerator": n, "denominator": d})
            info = {"numerator": ni, "denominator": di}
        sess.stop()
        return {"rows": C.fill_domain(q, rows), "scale_or_accuracy": info}

    notes = {
        "Q1": f"groupby(KeySet).count() after enforce(MaxRowsPerID({C.R}))",
        "Q2": f"groupby(KeySet).sum(amount, 0, 100) over snacks after enforce(MaxRowsPerID({C.R}))",
        "Q3": f"groupby(KeySet).average(amount, 0, 100) after enforce(MaxRowsPerID({C.R})); "
              "Tumult splits eps between its noisy sum and count",
        "Q4": (f"count_distinct(customer_id) per (region, age_band) after enforce(MaxRowsPerID({C.G})): "
               "MaxGroupsPerID supports one grouping column only, so one row per customer stands in "
               "for G=1 group (same as SmartNoise max_ids=1)"),
        "Q5": (f"two queries at eps/2: count_distinct(customer_id) per region with/without "
               f"category='snacks', enforce(MaxGroupsPerID('region', {C.G})); rate = num/den clipped [0,1]"),
    }
    C.run("tmlt_analytics",
          C.dist_version("tmlt.analytics", "tmlt.core", "pyspark", "pandas"), args,
          setup, one_rep, supported=True,
          note=notes[q] + ("; opted_in cast Boolean->Int (Tumult has no BooleanType); PureDP; keys public via KeySet; data read with spark.read.parquet and "
                           "cached in setup, each rep builds a new Session (fresh budget); "
                           "scale_or_accuracy = Session._noise_info (private API)"),
          import_seconds=IMPORT_S)


if __name__ == "__main__":
    main()
