"""Outgoing email: queued after the database commit, sent by the background worker (SPEC 3.3).

mail_queue() renders the message now, from the state the caller's transaction sees, and hands
it to the task queue only once that transaction commits (a rollback sends nothing). The
worker (`manage.py db_worker`) then runs send_email(). Attachments such as PDFs are rendered
by the worker, not in the request: each names a renderer (a dotted path returning bytes) and
its JSON arguments, because task arguments are stored as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from django_tasks import task


@dataclass(frozen=True)
class Attachment:
    filename: str
    mimetype: str
    render: str  # dotted path of a function returning the file's bytes; must live in carnet.
    kwargs: dict = field(default_factory=dict)


def mail_queue(
    *,
    to: str | list[str],
    subject: str,
    template: str,
    context: dict,
    attachments: tuple[Attachment, ...] | list[Attachment] = (),
    reply_to: str = "",
) -> None:
    """Render `template` (a .txt template) with `context`; it is sent only if the caller's
    transaction commits."""
    recipients = [to] if isinstance(to, str) else list(to)
    body = render_to_string(template, context)
    message = {
        "to": recipients,
        "subject": " ".join(subject.split()),
        "body": body,
        "reply_to": reply_to,
        "attachments": [asdict(a) for a in attachments],
    }
    if _queue_is_the_database():
        # The task row joins the caller's transaction: it commits with the data or not at all, so a
        # crash between the commit and the enqueue cannot lose a message (the worker sees it only
        # after the commit).
        send_email.enqueue(**message)
    else:
        transaction.on_commit(lambda: send_email.enqueue(**message))


def _queue_is_the_database() -> bool:
    return settings.TASKS.get("default", {}).get("BACKEND", "").startswith("django_tasks_db.")


@task()
def send_email(
    *, to: list[str], subject: str, body: str, reply_to: str = "", attachments: list[dict] = ()
) -> int:
    """The worker's side: render the attachments and send. Returns how many messages went out."""
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        reply_to=[reply_to] if reply_to else None,
    )
    for item in attachments:
        if not item["render"].startswith(
            "carnet."
        ):  # only our own renderers, whatever the queue holds
            raise ValueError(f"Refusing attachment renderer {item['render']!r}")
        content = import_string(item["render"])(**item["kwargs"])
        message.attach(item["filename"], content, item["mimetype"])
    return message.send()
