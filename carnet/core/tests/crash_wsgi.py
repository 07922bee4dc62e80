"""carnet.wsgi with one fault injected, for test_live_faults: a worker process is SIGKILLed at the
moment it hands a queued email to the task queue — after the request's transaction committed,
before the response is sent (mail_queue enqueues in transaction.on_commit)."""

import os
import signal

from carnet.core import mail
from carnet.wsgi import application  # noqa: F401  (what gunicorn serves)


class _DiesOnEnqueue:
    def enqueue(self, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


mail.send_email = _DiesOnEnqueue()
