"""Settings of the django-ninja floor (`floor.py`): Carnet's settings with no middleware and the
floor's two routes as the whole URLconf, so the floor measures Django + django-ninja + the same
SQL, nothing more."""

from carnet.settings import *  # noqa: F403 - the same database, connection and DEBUG settings

ROOT_URLCONF = "floor"
MIDDLEWARE: list[str] = []
