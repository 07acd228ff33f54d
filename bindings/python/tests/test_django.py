"""ltxvfs.django (issue #24): the README's recipe (django_site/settings.py) served by two
WSGI server processes on 127.0.0.1 over one replica URL with poll=5s, each its own writer
(write=1, no litestream) and reader:

- 200 POST-then-GET pairs, the POST on one process and the GET on the other: with the
  middleware every GET shows its POST's row; without it, the count of misses is printed;
- migrations ran on the writable alias only (the router refuses the replica alias);
- both processes writing at once: every POST succeeds (lost races retried), nothing lost.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

pytest.importorskip("django")

import ltxvfs  # noqa: E402

SITE = Path(__file__).with_name("django_site")


def _env(url, **extra):
    env = dict(os.environ, LTXVFS_TEST_DJANGO_URL=url, DJANGO_SETTINGS_MODULE="settings")
    env.pop("AWS_CA_BUNDLE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _manage(url, *args, **extra):
    return subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=SITE, env=_env(url, **extra),
        capture_output=True, text=True, timeout=120,
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, **extra):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(SITE / "serve.py"), str(self.port)], cwd=SITE,
            env=_env(url, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


class Client:
    """One user: its cookies (session or bookmark) go to whichever server it asks."""

    def __init__(self):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def post(self, server, text, writer=""):
        data = urllib.parse.urlencode({"text": text, "writer": writer}).encode()
        with self.opener.open(f"{server.base}/notes/", data, timeout=60) as r:
            return json.load(r)

    def get(self, server, path):
        with self.opener.open(f"{server.base}{path}", timeout=60) as r:
            return json.load(r)


@pytest.fixture
def site(tmp_path):
    replica = tmp_path / "replica"
    replica.mkdir()
    url = f"file://{replica}"
    done = _manage(url, "migrate", "--database", "default")
    assert done.returncode == 0, done.stderr
    return url


def _pairs(url, n, **extra):
    """n POST-then-GET pairs, alternating which server takes the POST: how many GETs
    missed their POST's row."""
    a, b = Server(url, **extra), Server(url, **extra)
    try:
        client = Client()
        # Both servers have read once (their replicas opened and polled).
        client.get(a, "/count/"), client.get(b, "/count/")
        missed = 0
        for i in range(n):
            writer, reader = (a, b) if i % 2 == 0 else (b, a)
            note = client.post(writer, f"note {i}")
            missed += not client.get(reader, f"/notes/{note['id']}/")["found"]
        return missed
    finally:
        errors = a.stop() + b.stop()
        assert "Traceback" not in errors, errors


def test_middleware_makes_every_get_see_its_post_across_processes(site):
    assert _pairs(site, 200) == 0


def test_without_the_middleware_gets_miss_posts(site):
    missed = _pairs(site, 200, LTXVFS_TEST_RYW="0")
    print(f"\nwithout ReadYourWritesMiddleware: {missed} of 200 GETs missed their POST (poll=5s)")
    assert missed > 0


def test_bookmark_in_a_cookie_without_sessions(site):
    assert _pairs(site, 20, LTXVFS_TEST_SESSIONS="0") == 0


def test_a_replica_that_cannot_reach_the_bookmark_serves_from_the_writer(site):
    server = Server(site, LTXVFS_TEST_SESSIONS="0", LTXVFS_TEST_WAIT="0.3")
    try:
        client = Client()
        note = client.post(server, "mine")
        # A bookmark no replica reaches (another replica's, or forged).
        request = urllib.request.Request(
            f"{server.base}/notes/{note['id']}/",
            headers={"Cookie": f"ltxvfs_bookmark=00000000ffffffff:{time.time():.3f}"},
        )
        began = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as r:
            assert json.load(r) == {"found": True}
        assert time.monotonic() - began < 5
    finally:
        errors = server.stop()
    assert "serves from the writable alias" in errors and "00000000ffffffff" in errors, errors


def test_migrations_ran_on_the_writable_alias_only(site):
    db = ltxvfs.connect(site, poll=0)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    applied = db.execute("SELECT count(*) FROM django_migrations WHERE app = 'notes'").fetchone()
    db.close()
    assert {"notes_note", "django_migrations"} <= tables
    assert applied == (1,)
    # The router refuses every migration on the replica alias: nothing to apply, nothing
    # written (the read-only alias would refuse a write).
    out = _manage(site, "migrate", "--database", "replica")
    assert out.returncode == 0, out.stderr
    check = _manage(site, "shell", "-c", (
        "from django.db import router; "
        "print(router.allow_migrate('replica', 'notes'), router.allow_migrate('default', 'notes'))"
    ))
    assert check.stdout.strip().splitlines()[-1].split() == ["False", "True"], check.stderr


def test_two_processes_writing_at_once_both_succeed_after_retries(site):
    a, b = Server(site), Server(site)
    try:
        def write(i):
            server = (a, b)[i % 2]
            return Client().post(server, f"race {i}", writer=f"w{i % 2}")

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(write, range(80)))
        retries = sum(r["retries"] for r in results)
        print(f"\n80 concurrent POSTs over two processes: {retries} retries after lost races")
    finally:
        errors = a.stop() + b.stop()
        assert "Traceback" not in errors, errors
    ids = sorted(r["id"] for r in results)
    assert len(set(ids)) == 80
    db = ltxvfs.connect(site, poll=0)
    rows = db.execute("SELECT writer, count(*) FROM notes_note WHERE text LIKE 'race %' GROUP BY writer").fetchall()
    db.close()
    assert dict(rows) == {"w0": 40, "w1": 40}
    assert retries > 0


def test_the_readme_shows_this_sites_settings():
    """README.md's Django recipe is this site's settings (its URL and poll aside)."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme[readme.index("### Django"):]
    shown = section[section.index("```python\n") + 10:section.index("```", section.index("```python\n") + 10)]
    settings = (SITE / "settings.py").read_text()
    recipe = settings[settings.index("# CONN_MAX_AGE"):settings.index("# --- end of the recipe")]
    recipe = recipe.replace('"NAME": URL', '"NAME": "s3://bucket/app.db"').replace('"poll": POLL', '"poll": "1s"')
    assert shown.strip() == recipe.strip()
