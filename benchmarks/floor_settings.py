"""Settings of the floors (`floor.py`): Carnet's settings with the floor's routes as the whole
URLconf. The django-ninja floor has no middleware, so it measures Django + django-ninja + the same
SQL, nothing more; the plumbed floor (FLOOR_PLUMBED=1) keeps Carnet's middleware."""

import os

from carnet.settings import *  # noqa: F403 - the same database, connection and DEBUG settings

ROOT_URLCONF = "floor"
if os.environ.get("FLOOR_PLUMBED") != "1":
    MIDDLEWARE: list[str] = []
