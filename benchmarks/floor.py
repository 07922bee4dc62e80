"""The floor of Carnet's stack for the redemption benchmark (issue 25): a minimal django-ninja API
whose two endpoints run the raw-SQL baseline's statements (`redemption.Statements`) through Django's
connection, one transaction per request, served by gunicorn like Carnet's API.

    gunicorn --pythonpath benchmarks floor:application
    (FLOOR_CONFIG = the statements' ids as JSON)

No authentication, no middleware, no ORM: what Carnet's API costs above this is Carnet's own."""

from __future__ import annotations

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floor_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from django.db import connection, transaction  # noqa: E402
from django.urls import path  # noqa: E402
from ninja import NinjaAPI, Schema  # noqa: E402
from redemption import Statements  # noqa: E402

statements = Statements(json.loads(os.environ.get("FLOOR_CONFIG", "{}")))
api = NinjaAPI(urls_namespace="floor", docs_url=None, openapi_url=None)


class AttachIn(Schema):
    pass_id: int
    visit: int


class ArriveIn(AttachIn):
    patient: int


@api.post("/appointments/{appointment}/patients/{patient}/pass")
def attach(request, appointment: int, patient: int, body: AttachIn):
    with transaction.atomic(), connection.cursor() as cur:
        _start, redemption, value = statements.attach(
            cur, appointment, patient, body.pass_id, body.visit
        )
    return {"redemption": redemption, "value_minor": value}


@api.post("/appointments/{appointment}/arrive")
def arrive(request, appointment: int, body: ArriveIn):
    with transaction.atomic(), connection.cursor() as cur:
        statements.arrive(cur, appointment, body.patient, body.pass_id, body.visit)
    return {"arrived": appointment}


@api.get("/ready")
def ready(request):
    return {"ready": True}


urlpatterns = [path("floor/", api.urls)]
