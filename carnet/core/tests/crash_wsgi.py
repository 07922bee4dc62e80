"""carnet.wsgi with one fault injected, for test_live_faults: a worker process is SIGKILLed at the
moment it hands an email to the task queue. With the database queue that happens inside the
request's transaction (carnet/core/mail.py), so the kill must take the request's writes and its
idempotency key down with it, never leave them committed without the email."""

import os
import signal

from carnet.core import mail
from carnet.wsgi import application  # noqa: F401  (what gunicorn serves)


class _DiesOnEnqueue:
    def enqueue(self, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


mail.send_email = _DiesOnEnqueue()
