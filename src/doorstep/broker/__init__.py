"""The local MQTT broker that `doorstep serve` runs when no broker URL is configured.

`Mosquitto` supervises one Mosquitto 2.0 process on a loopback port (and optionally a
TLS-only port for hubs elsewhere, `TlsListener`) with password authentication and a
deny-by-default ACL: the service user reaches every hub's topics, each hub only its own
(DESIGN principle 6). `hash_password` writes Mosquitto's `$7$` hashes so hub passwords
never pass through `mosquitto_passwd`; `new_password` makes one.

Modules: `passwords` (hash format), `config` (pure renderers of mosquitto.conf, the
password file and the ACL), `supervisor` (files on disk and the child process).
"""

from doorstep.broker.config import BrokerUser, TlsListener
from doorstep.broker.passwords import hash_password, new_password
from doorstep.broker.supervisor import BrokerError, Mosquitto

__all__ = ["BrokerError", "BrokerUser", "Mosquitto", "TlsListener", "hash_password", "new_password"]
