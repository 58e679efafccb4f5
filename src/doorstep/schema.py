"""Every table, imported in one place so `Base.metadata` is complete (for migrations)."""

from doorstep.access.devices import DeviceKey
from doorstep.access.models import Entry
from doorstep.accounts.models import AccessToken, ApiClient, Carrier, User
from doorstep.audit.models import AuditEvent, AuditHead
from doorstep.db import Base
from doorstep.deliveries.models import Delivery, Package
from doorstep.homes.models import AccessPoint, Home, HomeCarrier, HomeClosure, Hub
from doorstep.hublink.models import HubEvent, HubStream
from doorstep.notify.models import OutboxMessage, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "AccessPoint",
    "AccessToken",
    "ApiClient",
    "AuditEvent",
    "AuditHead",
    "Carrier",
    "Delivery",
    "DeviceKey",
    "Entry",
    "Home",
    "HomeCarrier",
    "HomeClosure",
    "Hub",
    "HubEvent",
    "HubStream",
    "OutboxMessage",
    "Package",
    "User",
    "WebhookEndpoint",
    "metadata",
]
