"""The prepared table: written once per data version, keyed per-customer row ranks.

The bound every engine applies (`_row_rank < k`) is done outside OpenDP, so its
stability argument (prepare.py) is tested here on neighbouring datasets.
"""
from __future__ import annotations

import shutil

import polars as pl
import pytest

from dpquery.engine import catalog, prepare
from dpquery.errors import ConfigError
from settings_helpers import make_settings


def _open(settings, folder):
    return catalog.open_table(settings.datasets["purchases"], folder)


def test_written_once_and_reopened(settings, tmp_path):
    first = _open(settings, tmp_path / "prep")
    mtimes = [f.stat().st_mtime_ns for f in first.files]
    again = _open(settings, tmp_path / "prep")
    assert again.files == first.files and again.version == first.version
    assert [f.stat().st_mtime_ns for f in again.files] == mtimes


def test_only_consented_rows_outside_excluded_categories(settings, demo_data, tmp_path):
    table = _open(settings, tmp_path / "prep")
    raw = pl.read_parquet(demo_data)
    kept = raw.filter(pl.col("opted_in") & ~pl.col("category").is_in(
        list(settings.datasets["purchases"].excluded_categories)))
    prepared = table.frame.collect()
    assert prepared.height == kept.height
    assert not set(prepared["category"]) & {"pharmacy", "alcohol", "tobacco", "prophylactics"}
    assert set(prepared.columns) == set(table.schema)


def test_ranks_number_each_customers_rows_from_zero(settings, tmp_path):
    df = _open(settings, tmp_path / "prep").frame.collect()
    per = df.group_by("customer_id").agg(n=pl.len(), lo=pl.col("_row_rank").min(),
                                         hi=pl.col("_row_rank").max(),
                                         distinct=pl.col("_row_rank").n_unique())
    assert per.filter((pl.col("lo") != 0) | (pl.col("hi") != pl.col("n") - 1)
                      | (pl.col("distinct") != pl.col("n"))).height == 0


def _prepared_without_rank_order(table) -> pl.DataFrame:
    cols = [c for c in table.schema]
    return table.frame.collect().sort(cols)


def test_removing_a_customer_leaves_every_other_customers_ranks_unchanged(settings, demo_data,
                                                                           tmp_path):
    """Neighbouring datasets: all rows of one (heavy) customer removed, data re-ordered."""
    raw = pl.read_parquet(demo_data)
    heavy = raw.group_by("customer_id").len().sort("len", descending=True)["customer_id"][0]
    neighbour = tmp_path / "neighbour"
    neighbour.mkdir()
    raw.filter(pl.col("customer_id") != heavy).reverse().write_parquet(neighbour / "p.parquet")
    key_dir = tmp_path / "prep"
    a = _open(settings, key_dir)
    shutil.copy(key_dir / "bounding.key", tmp_path / "key")
    other = make_settings(tmp_path / "n", neighbour)
    (tmp_path / "prep2").mkdir()
    shutil.copy(tmp_path / "key", tmp_path / "prep2" / "bounding.key")
    b = _open(other, tmp_path / "prep2")
    left = _prepared_without_rank_order(a).filter(pl.col("customer_id") != heavy)
    assert left.equals(_prepared_without_rank_order(b))
    assert heavy not in set(b.frame.collect()["customer_id"])


def test_another_key_keeps_other_rows(settings, tmp_path):
    a = _open(settings, tmp_path / "a").frame.filter(pl.col("_row_rank") < 5).collect()
    b = _open(settings, tmp_path / "b").frame.filter(pl.col("_row_rank") < 5).collect()
    assert a.height == b.height
    assert not a.sort(a.columns).equals(b.sort(b.columns))


def test_a_table_larger_than_max_rows_stops_start_up(demo_data, tmp_path):
    small = make_settings(tmp_path, demo_data, max_rows=1000,  # auto's largest bound must fit
                          bounds__auto_max_rows_per_customer=1000)
    with pytest.raises(ConfigError, match="max_rows"):
        _open(small, tmp_path / "prep")
    assert not list((tmp_path / "prep").glob(".*.tmp"))  # no staged copy left behind


def test_progress_is_reported_when_asked(settings, tmp_path, capsys):
    ds = settings.datasets["purchases"]
    files = catalog._files(ds.path)
    opts = {"memory_limit": "1GB", "spill_dir": tmp_path / "spill", "threads": None}
    prepare.prepare(ds, files, tmp_path / "out", "k", opts, progress=True)
    assert "preparing purchases" in capsys.readouterr().err


def test_non_finite_and_huge_amounts_are_clamped_not_fatal(demo_data, tmp_path):
    """A NaN, an infinity or 1e300 in a column with a resolution used to fail the
    BIGINT cast and with it the whole prepare step. Now they are clamped to the
    column's bounds (a NaN to the lower one), which every sum does anyway."""
    raw = pl.read_parquet(demo_data)
    odd = [float("nan"), float("inf"), float("-inf"), 1e300, -1e300]
    bad = raw.head(len(odd)).with_columns(pl.Series("amount", odd), opted_in=pl.lit(True),
                                          category=pl.lit("produce"))
    folder = tmp_path / "data"
    folder.mkdir()
    pl.concat([bad, raw.slice(len(odd))]).write_parquet(folder / "p.parquet")
    table = _open(make_settings(tmp_path / "s", folder), tmp_path / "prep")
    units = table.frame.collect()[catalog.units_column("amount")]
    col = table.column("amount")
    assert units.min() >= round(col.lower / col.resolution)
    assert units.max() <= round(col.upper / col.resolution)
    assert units.null_count() == 0
