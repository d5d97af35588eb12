"""Security review, finding 13: hall.toml holds the API token, the database
the device keys. Both are created 0600 (so are the database's -wal and -shm,
which SQLite gives the main file's mode), whatever the umask; a database
found readable by others is set to 0600 at start, with one warning."""

import os
import stat

import pytest
from click.testing import CliRunner

from gateway import cli
from gateway.store import db


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_writes_the_config_0600(tmp_path, umask022):
    path = tmp_path / "hall.toml"
    res = CliRunner().invoke(cli.gateway, ["init", str(path)])
    assert res.exit_code == 0, res.output
    assert _mode(path) == 0o600
    assert "token" in path.read_text(encoding="utf-8")


def test_init_force_over_a_readable_file_leaves_it_0600(tmp_path, umask022):
    path = tmp_path / "hall.toml"
    path.write_text("old = 1\n")
    os.chmod(path, 0o644)
    res = CliRunner().invoke(cli.gateway, ["init", str(path)])
    assert res.exit_code == 2 and path.read_text() == "old = 1\n"  # no --force: untouched
    res = CliRunner().invoke(cli.gateway, ["init", "--force", str(path)])
    assert res.exit_code == 0, res.output
    assert _mode(path) == 0o600 and "old = 1" not in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["hall.toml"]  # no temp file left behind


def test_init_in_a_missing_folder_is_one_line(tmp_path, umask022):
    res = CliRunner().invoke(cli.gateway, ["init", str(tmp_path / "nope" / "hall.toml")])
    assert res.exit_code != 0 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_new_database_and_its_wal_and_shm_are_0600(tmp_path, umask022):
    path = tmp_path / "gw.db"
    conn = db.open_db(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO devices (device_id, key) VALUES ('EV-1', ?)", (os.urandom(32),))
    conn.execute("COMMIT")
    for suffix in ("", "-wal", "-shm"):
        assert _mode(str(path) + suffix) == 0o600, suffix
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.db"]  # no temp file left behind
    other = db.connect(tmp_path / "other.db")  # every connection that creates the file
    other.close()
    assert _mode(tmp_path / "other.db") == 0o600


def test_existing_readable_database_is_tightened_with_one_warning(tmp_path, umask022, caplog):
    path = tmp_path / "gw.db"
    db.open_db(path).close()
    os.chmod(path, 0o644)
    with open(str(path) + "-wal", "wb"):  # a leftover -wal from an older gateway, 0644
        pass
    os.chmod(str(path) + "-wal", 0o644)
    with caplog.at_level("WARNING", logger="hcp.gateway.store.db"):
        conn = db.open_db(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "0600" in warnings[0], warnings
    for suffix in ("", "-wal", "-shm"):
        assert _mode(str(path) + suffix) == 0o600, suffix
    conn.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="hcp.gateway.store.db"):
        db.open_db(path).close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
