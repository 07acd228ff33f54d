"""The Datasette plugin the wheel brings (entry point ``datasette``), with the real Datasette
from PyPI: 0.65 configured in metadata.json (``-m``), 1.0 in datasette.yaml (``-c``).
`make python-test` runs this in a venv with Datasette 0.65 and again in one with 1.0."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasette.app import Datasette
from datasette.version import __version__ as DATASETTE_VERSION

REPLICA = Path(os.environ.get("LTXVFS_TEST_REPLICA", Path(__file__).parents[3] / "sql-tests" / "replica"))
URL = f"file://{REPLICA.resolve()}"
V1 = not DATASETTE_VERSION.startswith("0.")
PLUGINS = {
    "ltxvfs": {
        "databases": {
            "app": URL,
            "past": {"replica": URL, "txid": "1", "poll": "0"},
        }
    }
}


def query_path(db, sql):
    """The JSON of a query as rows of objects, in each version's URL form."""
    from urllib.parse import quote

    base = f"/{db}/-/query.json" if V1 else f"/{db}.json"
    return f"{base}?sql={quote(sql)}&_shape=array"


def make(plugins):
    # Datasette's own way in: plugin config under `plugins` of metadata (0.65) or config (1.0).
    kwargs = {"config": {"plugins": plugins}} if V1 else {"metadata": {"plugins": plugins}}
    return Datasette(memory=False, **kwargs)


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_plugin_is_installed_with_the_wheel():
    async def go():
        ds = make(PLUGINS)
        response = await ds.client.get("/-/plugins.json")
        return response.json()

    names = [p["name"] for p in run(go())]
    assert "ltxvfs" in names


def test_each_replica_is_served_under_its_name_with_its_settings():
    async def go():
        ds = make(PLUGINS)
        await ds.invoke_startup()
        out = {}
        # Several requests: Datasette reads on a pool of threads, each with its connection.
        for _ in range(5):
            for db, sql in [
                ("app", "select count(*) as n from orders"),
                ("past", "select count(*) as n from orders"),
                ("app", "select ltx_txid() as txid, litestream_lag() >= 0 as lagging"),
                ("past", "select ltx_txid() as txid"),
            ]:
                response = await ds.client.get(query_path(db, sql))
                assert response.status_code == 200, response.text
                out[(db, sql)] = response.json()
        databases = (await ds.client.get("/-/databases.json")).json()
        table = (await ds.client.get("/app/customers.json?_size=1")).status_code
        return out, databases, table

    out, databases, table = run(go())
    rows = list(out.values())
    assert rows[0] == [{"n": 1980}]
    assert rows[1] == [{"n": 2000}], "past opens at txid=1"
    assert rows[2] == [{"txid": "0000000000000002", "lagging": 1}]
    assert rows[3] == [{"txid": "0000000000000001"}]
    if isinstance(databases, dict):  # 1.0 wraps the list
        databases = databases["databases"]
    app = next(d for d in databases if d["name"] == "app")
    assert app["path"] == URL and app["size"] > 0
    assert table == 200


def test_the_replica_is_read_only():
    async def go():
        ds = make(PLUGINS)
        await ds.invoke_startup()
        db = ds.get_database("app")
        with pytest.raises(Exception, match="readonly|read-only"):
            await db.execute_write("delete from orders")
        return (await db.execute("select count(*) from orders")).first()[0]

    assert run(go()) == 1980


def test_a_bad_config_names_what_is_wrong():
    for plugins, words in [
        ({"ltxvfs": {"databases": {"app": {"cache_sz": "1MiB", "replica": URL}}}}, "cache_sz"),
        ({"ltxvfs": {"databases": {"app": {"txid": "1"}}}}, "needs a replica URL"),
    ]:
        with pytest.raises(ValueError, match=words):
            run(make(plugins).invoke_startup())


def test_the_cli_reads_the_plugin_config_from_its_file(tmp_path):
    # As a user types it: `datasette -m metadata.json` (0.65), `datasette -c datasette.yaml`
    # (1.0); --get makes one request in-process and prints the answer.
    if V1:
        config = tmp_path / "datasette.yaml"
        config.write_text(f"plugins:\n  ltxvfs:\n    databases:\n      app: {URL}\n")
        option = "-c"
    else:
        config = tmp_path / "metadata.json"
        config.write_text(json.dumps({"plugins": {"ltxvfs": {"databases": {"app": URL}}}}))
        option = "-m"
    datasette_bin = Path(sys.executable).with_name("datasette")
    sql = "select ltx_txid() as txid, count(*) as n from orders"
    result = subprocess.run(
        [str(datasette_bin), option, str(config), "--get", query_path("app", sql)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"txid": "0000000000000002", "n": 1980}]


@pytest.mark.skipif(V1, reason="Datasette 1.0 keeps its internal database in a temporary file, "
                    "which LTXVFS_REPLICA_URL would map too: use the plugin config (README)")
def test_the_default_vfs_route_keeps_datasettes_in_memory_databases(tmp_path):
    # The no-URI route of issue #16 with Datasette 0.65: LTXVFS_DEFAULT_VFS=1 and
    # LTXVFS_REPLICA_URL, `datasette app.db`. The plugin loads the extension before Datasette
    # opens anything, so every connection of its shared-cache in-memory internal database
    # uses the same (ltx) VFS: before, 7 of 10 requests failed with "no such table:
    # databases", each thread's connection getting a new, empty one. (Its index page still
    # stats app.db as a local file: the plugin config is the way to serve replicas.)
    script = f"""
import asyncio, json
from datasette.app import Datasette
async def main():
    ds = Datasette(["app.db"])
    await ds.invoke_startup()
    out = []
    for _ in range(10):
        r = await ds.client.get({query_path('app', 'select count(*) as n from orders')!r})
        out.append((r.status_code, r.json() if r.status_code == 200 else r.text[:200]))
    print(json.dumps(out))
asyncio.run(main())
"""
    env = dict(os.environ, LTXVFS_DEFAULT_VFS="1", LTXVFS_REPLICA_URL=URL)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers == [[200, [{"n": 1980}]]] * 10, answers


def test_hostile_selects_from_visitors_cannot_steer_the_plugin(tmp_path):
    # Issue #22: Datasette serves SELECT to anonymous visitors. What a SELECT did before: made
    # ltx the process's default VFS, remapped the host's names, sent the host's requests to an
    # endpoint the visitor chose, moved a shared connection to the past. Now: errors, and the
    # served replica still answers with its latest state.
    victim = tmp_path / "victim.db"
    hostile = [
        "select ltx_default_vfs(1)",
        f"select ltx_register('app.db', '{URL}', 'txid=1')",
        f"select ltx_register('x.db', '{URL}', 'hydrate={victim}')",
        "select ltx_register('x.db', 's3://b/p?endpoint=http://127.0.0.1:9')",
        "select ltx_set_time('2000-01-01T00:00:00Z')",
        "select litestream_set_time('latest')",
        f"attach 'file:x.db?vfs=ltx&replica={URL}&hydrate={victim}' as x",
    ]
    plugins = {"ltxvfs": {"databases": {"app": URL, "travel": {"replica": URL, "sql_time_travel": True}}}}

    async def go():
        ds = make(plugins)
        await ds.invoke_startup()
        refused = []
        for _ in range(3):  # several requests, several of Datasette's threads
            for sql in hostile:
                response = await ds.client.get(query_path("app", sql))
                refused.append((sql, response.status_code))
        after = await ds.client.get(query_path("app", "select ltx_txid() as txid, count(*) as n from orders"))
        # The host allowed SQL time travel on one database, by its plugin config.
        moved = await ds.client.get(query_path("travel", "select ltx_set_time('latest') as txid"))
        internal = await ds.client.get("/-/databases.json")
        # A bookmark never reached holds one of Datasette's SQL threads (a function call is
        # not interrupted by its time limit): a visitor's wait is capped at 2 s, not 600.
        started = time.monotonic()
        stalled = await ds.client.get(query_path("app", "select ltx_wait_txid('ffffffffffffffff', 600)"))
        held = time.monotonic() - started
        return refused, after.json(), moved.json(), internal.status_code, (stalled.status_code, held)

    refused, after, moved, internal, (stalled, held) = run(go())
    assert stalled != 200 and held < 4, (stalled, held)
    for sql, status in refused:
        assert status != 200, f"a visitor's {sql!r} ran"
    assert after == [{"txid": "0000000000000002", "n": 1980}]
    assert moved == [{"txid": "0000000000000002"}]
    assert internal == 200
    assert not victim.exists()
