"""The `Idempotency-Key` request header: a client's own name for one request, so that the
same request sent again (after a timeout on its side) is answered as the first was
instead of being carried out twice.

A key is 1 to 255 printable ASCII characters, chosen by the client (a UUID, an order
number) and kept for `KEPT_FOR` per client. The request it names is remembered by the
digest of its parsed body (`fingerprint`): the same key with another body is refused
(`IdempotencyKeyReused`), as a client's bug rather than a retry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header
from pydantic import BaseModel

from doorstep.errors import DoorstepError, InvalidRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer given again
MAX_LENGTH = 255
KEPT_FOR = timedelta(hours=24)


class InvalidIdempotencyKey(InvalidRequest):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(DoorstepError):
    code = "idempotency_key_reused"
    status = 422

    def __init__(self) -> None:
        super().__init__(
            f"this {HEADER} was used for another request in the last 24 hours;"
            " a new request needs a new key"
        )


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=(
                "Your own name for this request, 1 to 255 printable ASCII characters (a"
                " UUID, say), kept for 24 hours: the same request sent again with it is"
                " answered as the first was (with `Idempotent-Replayed: true`) and"
                " changes nothing; another request with it is refused"
                " (`idempotency_key_reused`)."
            ),
        ),
    ] = None,
) -> str | None:
    if key is not None and not (0 < len(key) <= MAX_LENGTH and key.isascii() and key.isprintable()):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters"
        )
    return key


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def fingerprint(body: BaseModel) -> str:
    """The SHA-256 of the parsed body as canonical JSON (sorted keys, no spaces): the
    same request in another key order or spacing, or with a default spelled out, has
    the same fingerprint."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
