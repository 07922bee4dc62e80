"""The floors of Carnet's stack for the redemption benchmark (issue 25): two endpoints that run the
raw-SQL baseline's statements (`redemption.Statements`) through Django's connection, one transaction
per request, served by gunicorn like Carnet's API.

    gunicorn --pythonpath benchmarks floor:application
    (FLOOR_CONFIG = the statements' ids as JSON; FLOOR_PLUMBED=1 for the plumbed floor)

- **The django-ninja floor** (default): a bare NinjaAPI at /floor/, with no middleware, no
  authentication, no ORM. What Carnet's API costs above it is Carnet's own.
- **The plumbed floor** (`FLOOR_PLUMBED=1`): the same endpoints at /api/floor/, behind what every
  Carnet API request must go through before a service runs — Carnet's middleware (the
  Idempotency-Key's record and the request's one transaction among them), its bearer-token
  authentication and its API class. What Carnet's API costs above this one is its services: the
  rules, the ORM and the answer's schema.
"""

from __future__ import annotations

import json
import os

PLUMBED = os.environ.get("FLOOR_PLUMBED") == "1"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floor_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from django.db import connection, transaction  # noqa: E402
from django.urls import path  # noqa: E402
from ninja import NinjaAPI, Schema  # noqa: E402
from redemption import FLOOR, PLUMBED_FLOOR, Statements  # noqa: E402

statements = Statements(json.loads(os.environ.get("FLOOR_CONFIG", "{}")))
if PLUMBED:
    from carnet.api import CarnetAPI, TokenAuth

    api = CarnetAPI(urls_namespace="plumbed", auth=TokenAuth(), docs_url=None, openapi_url=None)
    PREFIX = PLUMBED_FLOOR
else:
    api = NinjaAPI(urls_namespace="floor", docs_url=None, openapi_url=None)
    PREFIX = FLOOR


class AttachIn(Schema):
    pass_id: int
    visit: int


class ArriveIn(AttachIn):
    patient: int


# savepoint=False: the plumbed floor's statements join the keyed request's transaction (as Carnet's
# services do, core.atomic); alone, it is the request's own transaction.
@api.post("/appointments/{appointment}/patients/{patient}/pass")
def attach(request, appointment: int, patient: int, body: AttachIn):
    with transaction.atomic(savepoint=False), connection.cursor() as cur:
        _start, redemption, value = statements.attach(
            cur, appointment, patient, body.pass_id, body.visit
        )
    return {"redemption": redemption, "value_minor": value}


@api.post("/appointments/{appointment}/arrive")
def arrive(request, appointment: int, body: ArriveIn):
    with transaction.atomic(savepoint=False), connection.cursor() as cur:
        statements.arrive(cur, appointment, body.patient, body.pass_id, body.visit)
    return {"arrived": appointment}


@api.get("/ready")
def ready(request):
    return {"ready": True}


urlpatterns = [path(PREFIX.strip("/") + "/", api.urls)]
