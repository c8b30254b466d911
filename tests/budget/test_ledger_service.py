"""The service side of a lost ledger: start-up refuses it, a running worker answers 503."""
import shutil
import subprocess
import sys

import pytest

from budget import Amount, LedgerMissing
from dpquery.http.app import create_app
from dpquery.ledger_access import identity_file, init_configured
from settings_helpers import make_settings
from server_helpers import write_config


@pytest.fixture
def settings(tmp_path, demo_data):
    return make_settings(tmp_path / "var", demo_data)


def test_the_app_never_creates_a_ledger(settings):
    with pytest.raises(LedgerMissing, match="dpquery admin init"):
        create_app({"SETTINGS": settings})
    assert not settings.ledger_path.exists()


def test_a_ledger_moved_away_under_a_running_app_gives_503(settings):
    ledger, created = init_configured(settings)
    assert created and identity_file(settings).read_text().strip() == ledger.ledger_id
    _, key = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    ledger.close()
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    auth = {"Authorization": f"Bearer {key}"}
    body = {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": 0.25}
    assert client.post("/v1/queries", json=body, headers=auth).status_code == 200
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        if (settings.ledger_path.parent / name).exists():
            shutil.move(settings.ledger_path.parent / name, settings.ledger_path.parent / f"x{name}")
    r = client.post("/v1/queries", json={**body, "epsilon": 0.5}, headers=auth)
    assert r.status_code == 503 and r.json["error"]["code"] == "ledger_unavailable"
    assert "Traceback" not in r.get_data(as_text=True) and r.headers["Retry-After"] == "5"
    assert not settings.ledger_path.exists()  # no new, empty ledger in its place
    with pytest.raises(LedgerMissing, match="this installation's ledger"):
        create_app({"SETTINGS": settings})  # a restarted worker refuses to start


def _serve(config, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dpquery.cli", "--config", str(config), "serve",
                           "--port", "9", *extra], capture_output=True, text=True, timeout=120,
                          cwd=config.parent)


def test_serve_refuses_a_missing_ledger_and_never_remakes_a_lost_demo_one(tmp_path, demo_data):
    config = write_config(tmp_path, data=demo_data)
    refused = _serve(config)
    assert refused.returncode != 0 and "no ledger at" in refused.stderr
    assert not (tmp_path / "var" / "ledger.db").exists()
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "ledger-id").write_text("0b6f1c5e-lost-ledger\n")  # used before, now gone
    again = _serve(config, "--demo")
    assert again.returncode != 0 and "ledger 0b6f1c5e-lost-ledger" in again.stderr
    assert not (tmp_path / "var" / "ledger.db").exists()
    assert not (tmp_path / "var" / "demo-keys.txt").exists()
