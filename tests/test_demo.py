"""Tests for the deterministic demo-data generator (dpquery.demo)."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from dpquery import demo
from dpquery.demo import DemoSummary, customers_for_rows, rows_estimate, write_demo

CONFIG = Path(__file__).resolve().parents[1] / "config.toml"
CUSTOMERS = 3000
CHUNK = 1000  # three part files


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo") / "purchases"
    summary = write_demo(out, CUSTOMERS, seed=7, chunk_customers=CHUNK)
    return out, summary


@pytest.fixture(scope="module")
def df(written: tuple[Path, DemoSummary]) -> pl.DataFrame:
    out, _ = written
    return pl.scan_parquet(out / "*.parquet").collect()


@pytest.fixture(scope="module")
def purchases_config() -> dict:
    with CONFIG.open("rb") as f:
        return tomllib.load(f)["datasets"]["purchases"]


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("*.parquet"))


# ---------------------------------------------------------------- layout


def test_summary_and_files(written: tuple[Path, DemoSummary], df: pl.DataFrame) -> None:
    out, summary = written
    assert summary == DemoSummary(customers=CUSTOMERS, rows=df.height, files=3)
    assert [p.name for p in _parts(out)] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in _parts(out)]
    with pytest.raises(AttributeError):
        summary.rows = 0  # type: ignore[misc]


def test_columns_and_dtypes_exact(written: tuple[Path, DemoSummary], df: pl.DataFrame) -> None:
    expected = {
        "customer_id": pl.Int64,
        "region": pl.String,
        "age_band": pl.String,
        "opted_in": pl.Boolean,
        "purchased_on": pl.Date,
        "category": pl.String,
        "amount": pl.Float64,
    }
    assert dict(df.schema) == expected
    assert dict(demo.SCHEMA) == expected
    out, _ = written
    for part in _parts(out):
        assert pq.read_schema(part).remove_metadata() == demo.ARROW_SCHEMA  # no dictionaries
    assert df.null_count().row(0) == (0,) * df.width


# ---------------------------------------------------------------- determinism


def test_same_parameters_give_byte_identical_files(
    written: tuple[Path, DemoSummary], tmp_path: Path
) -> None:
    out, summary = written
    again = write_demo(tmp_path / "again", CUSTOMERS, seed=7, chunk_customers=CHUNK)
    assert again == summary
    first, second = _parts(out), _parts(tmp_path / "again")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_other_seed_gives_other_data(written: tuple[Path, DemoSummary], tmp_path: Path) -> None:
    out, _ = written
    write_demo(tmp_path, CUSTOMERS, seed=8, chunk_customers=CHUNK)
    assert (tmp_path / "part-00000.parquet").read_bytes() != (
        out / "part-00000.parquet"
    ).read_bytes()


def test_chunks_are_independent_of_later_chunks(
    written: tuple[Path, DemoSummary], tmp_path: Path
) -> None:
    # chunk k depends only on (seed, k, its customers): a larger table with the
    # same chunk size starts with the same part files
    out, _ = written
    write_demo(tmp_path, CUSTOMERS + CHUNK, seed=7, chunk_customers=CHUNK)
    for part in _parts(out):
        assert (tmp_path / part.name).read_bytes() == part.read_bytes()


def test_rewrite_replaces_stale_parts_only(tmp_path: Path) -> None:
    write_demo(tmp_path, 500, chunk_customers=100)
    (tmp_path / "_summary.json").write_text("{}")
    summary = write_demo(tmp_path, 150, chunk_customers=100)
    assert summary.files == 2
    assert [p.name for p in _parts(tmp_path)] == ["part-00000.parquet", "part-00001.parquet"]
    assert (tmp_path / "_summary.json").read_text() == "{}"
    assert not list(tmp_path.glob("*.tmp"))
    n = pl.scan_parquet(tmp_path / "*.parquet").select(pl.len()).collect().item()
    assert n == summary.rows


# ---------------------------------------------------------------- domains


def test_values_match_config_domains(df: pl.DataFrame, purchases_config: dict) -> None:
    columns = purchases_config["columns"]
    sensitive = set(purchases_config["policy"]["excluded_categories"])
    assert sensitive == set(demo.SENSITIVE_CATEGORIES)
    assert list(demo.REGIONS) == columns["region"]["values"]
    assert list(demo.AGE_BANDS) == columns["age_band"]["values"]
    assert list(demo.CATEGORIES) == columns["category"]["values"]

    assert set(df["region"].unique()) == set(columns["region"]["values"])
    assert set(df["age_band"].unique()) == set(columns["age_band"]["values"])
    assert set(df["category"].unique()) == set(columns["category"]["values"]) | sensitive
    years = df["purchased_on"].dt.year().unique().sort().to_list()
    assert years == columns["year"]["values"]
    assert df["purchased_on"].min() >= dt.date(2016, 1, 1)
    assert df["purchased_on"].max() <= dt.date(2025, 12, 31)


def test_sensitive_categories_present(df: pl.DataFrame) -> None:
    counts = dict(df["category"].value_counts().iter_rows())
    for category in demo.SENSITIVE_CATEGORIES:
        assert counts.get(category, 0) > 0, category


def test_customer_ids_and_fixed_attributes(df: pl.DataFrame) -> None:
    per = df.group_by("customer_id").agg(
        pl.col("age_band").n_unique().alias("ages"),
        pl.col("opted_in").n_unique().alias("opts"),
        pl.col("region").n_unique().alias("regions"),
    )
    assert per.height == CUSTOMERS
    assert sorted(per["customer_id"]) == list(range(1, CUSTOMERS + 1))
    assert per["ages"].max() == 1
    assert per["opts"].max() == 1
    assert per["regions"].max() == 2
    assert 0.3 < (per["regions"] == 2).mean() < 0.9


def test_second_county_share(df: pl.DataFrame) -> None:
    home = df.group_by("customer_id", "region").len().sort(
        "customer_id", "len", "region", descending=[False, True, False]
    )
    home = home.group_by("customer_id", maintain_order=True).first()
    share_home = home["len"].sum() / df.height
    assert 0.84 < share_home < 0.96


def test_region_populations_unequal(df: pl.DataFrame) -> None:
    first = df.group_by("customer_id").agg(pl.col("region").mode().first())
    sizes = dict(first["region"].value_counts().iter_rows())
    ranked = sorted(sizes, key=sizes.__getitem__, reverse=True)
    assert set(ranked[:2]) == {"Wayne", "Oakland"}
    assert ranked[-1] == "Hillsdale"


def test_opted_in_share(df: pl.DataFrame) -> None:
    share = df.group_by("customer_id").agg(pl.col("opted_in").first())["opted_in"].mean()
    assert 0.80 <= share <= 0.90


# ---------------------------------------------------------------- distributions


def test_heavy_tailed_rows_per_customer(df: pl.DataFrame) -> None:
    rows = df.group_by("customer_id").len()["len"]
    assert rows.min() >= 1
    assert 45 <= rows.mean() <= 75
    assert 10 <= rows.median() <= 40
    assert rows.max() >= 1000
    assert rows.max() >= 30 * rows.median()
    assert rows.max() <= 5000


def test_amounts(df: pl.DataFrame) -> None:
    amount = df["amount"]
    assert amount.min() > 0
    assert (amount * 100 - (amount * 100).round()).abs().max() < 1e-6  # cents
    assert (amount > 100).mean() < 0.01
    assert ((amount >= 1) & (amount <= 60)).mean() > 0.95
    assert amount.max() > 100  # rare, but present
    by_cat = df.group_by("category").agg(pl.col("amount").median())
    med = dict(by_cat.iter_rows())
    assert med["meat"] > 2 * med["dairy"]


def test_category_frequencies(df: pl.DataFrame) -> None:
    share = dict(df["category"].value_counts(normalize=True).iter_rows())
    ranked = sorted(share, key=share.__getitem__, reverse=True)
    assert ranked[:2] == ["produce", "dairy"]
    assert share["prophylactics"] < 0.01
    assert ranked[-1] in {"prophylactics", "tobacco"}


def test_snack_rate_depends_on_age_and_region(df: pl.DataFrame) -> None:
    rate = df.group_by("age_band").agg((pl.col("category") == "snacks").mean().alias("r"))
    r = dict(rate.iter_rows())
    assert r["18-24"] > 1.5 * r["65+"]
    by_region = df.group_by("region").agg(
        (pl.col("category") == "health_food").mean().alias("r")
    )
    h = dict(by_region.iter_rows())
    assert h["Washtenaw"] > h["Wayne"]


def test_tastes_vary_between_customers(df: pl.DataFrame) -> None:
    per = (
        df.group_by("customer_id")
        .agg((pl.col("category") == "snacks").mean().alias("snacks"), pl.len())
        .filter(pl.col("len") >= 100)
    )
    assert per["snacks"].quantile(0.9) > 2.5 * per["snacks"].quantile(0.1)


# ---------------------------------------------------------------- helpers, errors


def test_rows_estimate_and_inverse() -> None:
    assert rows_estimate(1000) == 60_000
    assert customers_for_rows(1_000_000) == 16_667
    assert customers_for_rows(1) == 1
    for rows in (10_000, 1_000_000, 10_000_000, 50_000_000):
        assert abs(rows_estimate(customers_for_rows(rows)) - rows) <= 60


def test_rows_estimate_is_close(written: tuple[Path, DemoSummary]) -> None:
    _, summary = written
    assert abs(summary.rows / rows_estimate(CUSTOMERS) - 1) < 0.25


def test_small_tables(tmp_path: Path) -> None:
    summary = write_demo(tmp_path, 1, chunk_customers=1)
    assert summary.customers == 1 and summary.files == 1 and summary.rows >= 1
    small = pl.read_parquet(tmp_path / "part-00000.parquet")
    assert small["customer_id"].unique().to_list() == [1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"customers": 0}, ValueError),
        ({"customers": 10, "seed": -1}, ValueError),
        ({"customers": 10, "chunk_customers": 0}, ValueError),
        ({"customers": 10.0}, TypeError),
        ({"customers": True}, TypeError),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        write_demo(tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_block_splitting_covers_all_customers() -> None:
    counts = np.array([5000, 1, 1, 300_000, 2, 7] * 3, dtype=np.int64)
    blocks = demo._blocks(counts)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(counts)
    assert all(b1[1] == b2[0] for b1, b2 in zip(blocks, blocks[1:]))
    assert all(a < b for a, b in blocks)
