"""Runs localstripe (a stateful fake Stripe server) for the tests:
`python localstripe_server.py PORT`.

Two adjustments to the fake, both towards what real Stripe does:
- it keeps its state in memory only (it otherwise pickles everything to a fixed /tmp file after
  every request, which parallel test runs on one machine would share);
- PaymentIntent confirm accepts `off_session` as Stripe does; a card that needs its holder's
  authentication then fails with Stripe's `authentication_required` card error (402) instead of
  waiting for a 3-D Secure step no one is there to complete.
"""

import sys

from localstripe import resources
from localstripe.errors import UserError

resources.store.dump_to_disk = lambda: None

_confirm = resources.PaymentIntent._api_confirm.__func__


def _api_confirm(cls, id, off_session=None, **kwargs):
    off_session = resources.try_convert_to_bool(off_session)
    if off_session:
        intent = cls._api_retrieve(id)
        method = (
            resources.PaymentMethod._api_retrieve(intent.payment_method)
            if intent.payment_method
            else None
        )
        if method is not None and method._requires_authentication():
            raise UserError(
                402,
                "Your card was declined. This transaction requires authentication.",
                {
                    "code": "authentication_required",
                    "decline_code": "authentication_required",
                    "payment_intent": {"id": intent.id, "status": "requires_payment_method"},
                },
            )
    return _confirm(cls, id, **kwargs)


resources.PaymentIntent._api_confirm = classmethod(_api_confirm)
for i, (method, path, func) in enumerate(resources.extra_apis):
    if path == "/v1/payment_intents/{id}/confirm":
        resources.extra_apis[i] = (method, path, resources.PaymentIntent._api_confirm)

from localstripe import server  # noqa: E402  (after the patch: it binds the routes when imported)

if __name__ == "__main__":
    from aiohttp import web

    # Loopback only (localstripe's own start() listens on every interface).
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
