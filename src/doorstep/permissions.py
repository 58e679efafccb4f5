"""What each kind of principal may do. Routes name the permission they need; anything not
listed here is denied. Whether *this* object is yours is checked in the services."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    HOMES_MANAGE = "homes:home:manage"
    AUDIT_READ_OWN = "audit:home:read"
    AUDIT_READ_ALL = "audit:all:read"
    CARRIERS_MANAGE = "carriers:carrier:manage"
    COURIERS_MANAGE = "carriers:courier:manage"
    DELIVERIES_BOOK = "deliveries:delivery:book"
    ENTRIES_REQUEST = "entries:entry:request"
    ENTRIES_READ = "entries:entry:read"
    VISITS_REQUEST = "entries:visit:request"  # guests and provider workers, on a grant
    PROVIDERS_WORK = "providers:provider:work"  # whose organisation: checked in the service


class PrincipalRole(StrEnum):
    RESIDENT = "resident"
    COURIER = "courier"
    OPERATOR = "operator"
    CARRIER = "carrier"
    GUEST = "guest"
    WORKER = "worker"


GRANTED: dict[PrincipalRole, frozenset[Permission]] = {
    PrincipalRole.RESIDENT: frozenset(
        {Permission.HOMES_MANAGE, Permission.AUDIT_READ_OWN, Permission.ENTRIES_READ}
    ),
    PrincipalRole.COURIER: frozenset({Permission.ENTRIES_REQUEST, Permission.ENTRIES_READ}),
    PrincipalRole.GUEST: frozenset({Permission.VISITS_REQUEST, Permission.ENTRIES_READ}),
    PrincipalRole.WORKER: frozenset(
        {Permission.VISITS_REQUEST, Permission.PROVIDERS_WORK, Permission.ENTRIES_READ}
    ),
    PrincipalRole.CARRIER: frozenset(
        {Permission.DELIVERIES_BOOK, Permission.COURIERS_MANAGE, Permission.ENTRIES_READ}
    ),
    PrincipalRole.OPERATOR: frozenset(
        {
            Permission.CARRIERS_MANAGE,
            Permission.COURIERS_MANAGE,
            Permission.AUDIT_READ_ALL,
            Permission.ENTRIES_READ,
        }
    ),
}
