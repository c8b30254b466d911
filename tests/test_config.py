"""config.toml: the shipped file loads; bad keys stop start-up naming the key."""
from __future__ import annotations

import copy

import pytest

from settings_helpers import ROOT, shipped_config
from dpquery import config
from dpquery.errors import ConfigError


def test_shipped_config_loads():
    settings = config.load(ROOT / "config.toml")
    ds = settings.datasets["purchases"]
    assert ds.privacy_unit == "customer_id"
    assert "pharmacy" in ds.excluded_categories
    assert settings.ledger_path.is_absolute()


@pytest.mark.parametrize("path,value,fragment", [
    (("server", "prot"), 1, "unknown key 'prot'"),
    (("server", "port"), "8000", "server.port: expected int"),
    (("datasets", "purchases", "measure"), "approx", "expected 'pure' or 'zcdp'"),
    (("datasets", "purchases", "bounds", "rows_per_customer"), 0, "expected a positive number"),
    (("datasets", "purchases", "bounds", "rows_per_custmer"), 5, "unknown key 'rows_per_custmer'"),
    (("datasets", "purchases", "columns", "amount", "upper"), -1.0, "lower < upper"),
    (("datasets", "purchases", "columns", "amount", "typ"), "float", "unknown key 'typ'"),
    (("datasets", "purchases", "policy", "excluded_columns"), ["opted_in"], "must include the privacy unit"),
    (("ledgr",), {}, "unknown key 'ledgr'"),
])
def test_bad_settings_stop_start_up_naming_the_key(path, value, fragment):
    raw = copy.deepcopy(shipped_config())
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        config.from_dict(raw)
    assert fragment in str(err.value)


def test_missing_required_key_is_named():
    raw = copy.deepcopy(shipped_config())
    del raw["datasets"]["purchases"]["privacy_unit"]
    with pytest.raises(ConfigError, match="datasets.purchases.privacy_unit is required"):
        config.from_dict(raw)


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for section, spec in config.SECTION_SPECS.items():
        for key in spec:
            assert f"`{key}`" in readme, f"README does not document {section}.{key}"


def test_a_spark_cluster_needs_shared_prepared_storage(tmp_path, demo_data):
    raw = shipped_config()
    raw["datasets"]["purchases"].update(path=str(demo_data), engine="spark")
    raw["spark"] = {"master": "spark://head:7077"}
    with pytest.raises(config.ConfigError, match="set spark.prepared_dir"):
        config.from_dict(raw, base=tmp_path)
    raw["spark"]["prepared_dir"] = "s3a://bucket/dpquery/prepared"
    assert config.from_dict(raw, base=tmp_path).engine["spark"]["prepared_dir"]
