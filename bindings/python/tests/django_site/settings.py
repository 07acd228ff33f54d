"""A Django site on ltxvfs for tests/test_django.py: the README's recipe, on the replica URL
in LTXVFS_TEST_DJANGO_URL. LTXVFS_TEST_RYW=0 leaves the middleware out (to count what a
reader misses without it)."""

import os

URL = os.environ["LTXVFS_TEST_DJANGO_URL"]
POLL = os.environ.get("LTXVFS_TEST_POLL", "5s")

SECRET_KEY = "ltxvfs-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "urls"
INSTALLED_APPS = ["django.contrib.sessions", "notes"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- the recipe (README.md, "Django") ---
# CONN_MAX_AGE=None keeps connections, and so the replica and its page cache, between
# requests (a replica opened per request lists and reads its index every time).
DATABASES = {
    "default": {
        "ENGINE": "ltxvfs.django", "NAME": URL, "CONN_MAX_AGE": None,
        "OPTIONS": {"write": True, "poll": POLL},
    },
    "replica": {
        "ENGINE": "ltxvfs.django", "NAME": URL, "CONN_MAX_AGE": None,
        "OPTIONS": {"poll": POLL},
    },
}
DATABASE_ROUTERS = ["ltxvfs.django.ReplicaRouter"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "ltxvfs.django.ReadYourWritesMiddleware",
]
# Sessions in signed cookies: a session in the database would be read from a replica too.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
# --- end of the recipe ---

if os.environ.get("LTXVFS_TEST_WAIT"):
    LTXVFS_BOOKMARK_WAIT = float(os.environ["LTXVFS_TEST_WAIT"])
if os.environ.get("LTXVFS_TEST_RYW") == "0":
    MIDDLEWARE.remove("ltxvfs.django.ReadYourWritesMiddleware")
if os.environ.get("LTXVFS_TEST_SESSIONS") == "0":
    MIDDLEWARE.remove("django.contrib.sessions.middleware.SessionMiddleware")
    INSTALLED_APPS.remove("django.contrib.sessions")

LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"ltxvfs.django": {"handlers": ["stderr"], "level": "WARNING"}},
}
