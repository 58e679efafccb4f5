"""Every table, imported in one place so `Base.metadata` is complete (for migrations)."""

from doorstep.access.devices import DeviceKey
from doorstep.access.models import Entry
from doorstep.accounts.models import (
    AccessToken,
    ApiClient,
    Carrier,
    RecoveryCode,
    TotpCredential,
    User,
)
from doorstep.audit.models import AuditEvent, AuditHead
from doorstep.clips.models import ClipRecord, HomeVideo
from doorstep.db import Base
from doorstep.deliveries.models import Delivery, Package
from doorstep.grants.models import (
    AccessGrant,
    HubShadow,
    Invitation,
    Provider,
    ProviderBlock,
    ProviderMember,
)
from doorstep.homes.models import AccessPoint, Home, HomeCarrier, HomeClosure, Hub
from doorstep.hublink.models import HubEvent, HubStream
from doorstep.keycheck import SharedKeys
from doorstep.notify.models import OutboxMessage, WebhookEndpoint
from doorstep.ratelimit import GuessHit
from doorstep.web.models import NotificationChoice, WebSession

metadata = Base.metadata

__all__ = [
    "AccessGrant",
    "AccessPoint",
    "AccessToken",
    "ApiClient",
    "AuditEvent",
    "AuditHead",
    "Carrier",
    "ClipRecord",
    "Delivery",
    "DeviceKey",
    "Entry",
    "GuessHit",
    "Home",
    "HomeCarrier",
    "HomeClosure",
    "HomeVideo",
    "Hub",
    "HubEvent",
    "HubShadow",
    "HubStream",
    "Invitation",
    "NotificationChoice",
    "OutboxMessage",
    "Package",
    "Provider",
    "ProviderBlock",
    "ProviderMember",
    "RecoveryCode",
    "SharedKeys",
    "TotpCredential",
    "User",
    "WebSession",
    "WebhookEndpoint",
    "metadata",
]
