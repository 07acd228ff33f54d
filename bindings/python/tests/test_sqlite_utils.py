"""The sqlite-utils plugin the wheel brings (entry point ``sqlite_utils``), with the real
sqlite-utils from PyPI: its CLI opens a replica URI as it opens a file, and its Python API
takes a connection from ``ltxvfs.connect``."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

import sqlite_utils

import ltxvfs

REPLICA = Path(os.environ.get("LTXVFS_TEST_REPLICA", Path(__file__).parents[3] / "sql-tests" / "replica"))
URL = f"file://{REPLICA.resolve()}"
URI = f"file:app.db?vfs=ltx&replica={quote(URL, safe='')}&poll=0"
CLI = Path(sys.executable).with_name("sqlite-utils")


def cli(*args, cwd):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_cli_queries_a_replica_uri(tmp_path):
    result = cli("query", URI, "select ltx_txid() as txid, count(*) as n from orders", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"txid": "0000000000000002", "n": 1980}]
    # The URI was read as a URI: nothing was created under that name locally.
    assert list(tmp_path.iterdir()) == []


def test_a_replica_that_does_not_exist_is_an_error_not_an_empty_database(tmp_path):
    missing = f"file:app.db?vfs=ltx&replica={quote('file://' + str(tmp_path / 'nothing'), safe='')}"
    result = cli("query", missing, "select 1", cwd=tmp_path)
    assert result.returncode != 0
    assert "unable to open database file" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_api_takes_a_replica_connection():
    db = sqlite_utils.Database(ltxvfs.connect(URL, poll=0))
    assert db["orders"].count == 1980
    assert "customers" in db.table_names()
    assert next(db.query("select ltx_txid() as txid")) == {"txid": "0000000000000002"}
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db["orders"].delete_where("id = 1")
