"""The service <-> hub contract: topics, messages, grant tokens, reason codes.

Both `doorstep serve` and `doorstep hub` import this package and nothing of each other.
`PROTOCOL_VERSION` is carried in every command (`v`); a hub refuses a version it does not
speak rather than guessing.
"""

from doorstep.protocol.codes import Reason
from doorstep.protocol.topics import Topics

PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "Reason", "Topics"]
