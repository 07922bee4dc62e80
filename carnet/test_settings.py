"""Settings for the test suite: carnet.settings with a key that is only for tests.

Set in the environment (not only here) so the servers the tests start as subprocesses (gunicorn,
manage.py) inherit it; a real SECRET_KEY in the environment wins."""

import os

os.environ.setdefault("SECRET_KEY", "carnet-tests-only-" + "not-a-secret-" * 4)

from carnet.settings import *  # noqa: E402,F401,F403
