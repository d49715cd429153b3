"""Replay defence: a changing request is accepted once.

SigV4 alone lets a captured request be sent again for as long as its date is within the allowed clock skew
(:data:`strongroom.control.sigv4.MAX_SKEW` either side). The API remembers the signature of every changing request
it accepted until that window closes for it, in the control plane's database (a restart does not reopen the
window), and refuses the same signature again. Reads (``Describe*``, ``List*``) are not remembered: sending one
again changes nothing. AWS SDKs sign a fresh ``amz-sdk-invocation-id`` and the attempt number into each request,
so their own retries carry new signatures.
"""

from __future__ import annotations

import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .records import AcceptedSignature, Store
from .sigv4 import MAX_SKEW, SignatureError, parse_authorization


def accept_once(store: Store, authorization: str, signed_at: datetime.datetime,
                now: datetime.datetime | None = None) -> None:
    """Record the signature of a verified changing request; forget those whose window has closed.

    Args:
        authorization: the request's ``Authorization`` header (already verified).
        signed_at: its ``X-Amz-Date`` (UTC).

    Raises:
        SignatureError: ``InvalidSignatureException``: the signature was accepted before (a replay).
    """
    _, _, signature = parse_authorization(authorization)
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        with store.session() as session:
            session.execute(delete(AcceptedSignature).where(AcceptedSignature.expires < now.timestamp()))
            session.add(AcceptedSignature(signature=signature[:64],
                                          expires=(signed_at + MAX_SKEW).timestamp()))
    except IntegrityError:
        raise SignatureError("InvalidSignatureException",
                             "This signed request was already accepted: a request that changes state is accepted "
                             "once. Sign it again to repeat it.") from None
