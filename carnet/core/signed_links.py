"""Signed, expiring links (Pay Balance, password reset, portal invitation) on carnet's clock.

A link's token is a TimestampSigner value: the signature proves Carnet made it, the timestamp
how old it is. Reading the time through carnet.core.clock lets tests move it forward.
"""

from __future__ import annotations

from django.core import signing

from . import clock


class ClockSigner(signing.TimestampSigner):
    """A TimestampSigner that reads carnet's clock, so tests can move time forward."""

    def timestamp(self):
        return signing.b62_encode(int(clock.now().timestamp()))

    def unsign_age(self, value: str) -> tuple[str, float]:
        """(the signed value, its age in seconds); signing.BadSignature or
        ValueError if tampered."""
        value, stamp = signing.Signer.unsign(self, value).rsplit(self.sep, 1)
        return value, clock.now().timestamp() - signing.b62_decode(stamp)
