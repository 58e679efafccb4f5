"""One Door Lock node as a python-matter-server describes it, read as the hub's lock model.

`LockNode` keeps the node's attributes (the server's dump, then its reports) and turns
what the server says into hub lock events. It is pure, with no threads and no I/O: the
driver calls it under its own mutex and delivers what it returns.

- State: LockState (257/0; null reads NOT_FULLY_LOCKED), DoorState (257/3; absent reads
  UNSPECIFIED_ERROR, so a lock without a door position sensor never reads as secure),
  battery from Power Source 47/12 (half percent) or else its coarse charge level 47/14
  (OK 100, Warning 20, Critical 5; nothing reported reads 100).
- `node_event`: the lock's DoorLockAlarm, DoorStateChange, LockOperation and
  LockOperationError events, one for one, each with its `Origin`. LockJammed sets
  `jammed` until the bolt next completes a movement. A LockOperation also sets
  LockState, which the hub reads on it, because its attribute report may come later.
- `Origin`: a LockOperation or LockOperationError names the controller whose command
  it was: FabricIndex (the lock's index of that controller's fabric) and SourceNode (its
  node id), both null when no controller caused it (a keypad, a hand) and in locks that
  leave them unset. The hub's is the server's fabric, as the node's CurrentFabricIndex
  (0/62/5) says, since the server reads it over its own session, and the server's
  controller node id, which the driver is given. A node id alone proves nothing: each
  fabric numbers its own nodes.
- An event is news only if its `event_number` is above every number seen from the node
  (any endpoint or cluster): the spec numbers a node's events in one counter that keeps
  rising for the life of the node, across its reboots (Matter Core §7.14.1.1, Event
  Number: "monotonically increasing for the life of the node", a guarantee "preserved
  across restarts"; the CHIP SDK persists it in blocks,
  CHIP_DEVICE_CONFIG_EVENT_ID_COUNTER_EPOCH). python-matter-server subscribes with no
  event-number filter, so when the SDK resubscribes (a radio blip) the lock sends its
  buffered events again, forwarded as live `node_event`s with their old numbers: a
  replayed LockOperation would answer a request the lock never carried out and set the
  bolt's state back, a replayed DoorStateChange the door's, a replayed LockJammed raise a
  jam long freed. The highest number seen is `event_mark`; the driver keeps it across
  restarts and gives it back with `recall_event_mark`. It counts per commissioning
  (`commissioned`, the dump's `date_commissioned`): a node commissioned again, or
  removed, starts from nothing. An event without a number is taken.
- `attribute_updated`: a DoorState report without its event still yields one
  DoorStateChange; each door change is reported once, by whichever comes first.
- `load` (a fresh dump after a reconnect, or `node_updated`) and `apply_read`: a change
  of lock or door state since the last word is reported as LockOperation with source
  UNSPECIFIED, or as DoorStateChange. The very first dump reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum, IntEnum
from typing import Any, TypeGuard, TypeVar

from doorstep.hub.drivers._matter.cluster import (
    CURRENT_FABRIC_INDEX,
    DOOR_LOCK_CLUSTER,
    OPERATIONAL_CREDENTIALS_CLUSTER,
    POWER_SOURCE_CLUSTER,
    ROOT_ENDPOINT,
    DoorLockAttribute,
    DoorLockEventId,
    PowerSourceAttribute,
    attribute_path,
)
from doorstep.hub.lock import (
    AlarmCode,
    DoorLockAlarm,
    DoorState,
    DoorStateChange,
    LockEvent,
    LockOperation,
    LockOperationError,
    LockOperationType,
    LockState,
    OperationError,
    OperationSource,
)

_E = TypeVar("_E", bound=IntEnum)
_D = TypeVar("_D")

_STATE_AFTER = {
    LockOperationType.LOCK: LockState.LOCKED,
    LockOperationType.UNLOCK: LockState.UNLOCKED,
    LockOperationType.UNLATCH: LockState.UNLATCHED,
}
_OPERATION_TO = {state: operation for operation, state in _STATE_AFTER.items()}
_CHARGE_LEVEL_PERCENT = {0: 100, 1: 20, 2: 5}


class Origin(Enum):
    """Whose command a lock event names (see the module docstring)."""

    HUB = "the hub's controller"  # the server's fabric and controller node, both
    OTHER = "another controller"  # a fabric index or node id that is not the hub's
    UNNAMED = "no controller named"  # either field null; and every other kind of event


class LockNode:
    """The Door Lock endpoint `endpoint` of node `node_id`, as last reported; events
    naming the controller `controller_node_id` on the server's fabric are the hub's (none
    are without it)."""

    def __init__(
        self, node_id: int, endpoint: int, *, controller_node_id: int | None = None
    ) -> None:
        self.node_id = node_id
        self.endpoint = endpoint
        self.controller_node_id = controller_node_id
        self.known = False  # the server has the node
        self.available = False  # ... and can reach it
        self.jammed = False
        self._attributes: dict[str, Any] = {}
        self._loaded = False
        self._last_event_number: int | None = None  # the highest seen from the node
        self.commissioned: str | None = None  # its date_commissioned, when the dump has one
        self.replays_dropped = 0  # events not numbered after the highest seen, ever

    # --- what the server says -----------------------------------------------------------

    def load(self, node: Mapping[str, Any] | None) -> list[LockEvent]:
        """Take a whole node (None: the server does not have it); report what changed."""
        if node is None:
            self.known = self.available = False
            self.commissioned = self._last_event_number = None  # added again: counts anew
            return []
        commissioned = node.get("date_commissioned")
        self._commissioned_as(commissioned if isinstance(commissioned, str) else None)
        before = self._states() if self._loaded else None
        attributes = node.get("attributes")
        self._attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
        self.available = node.get("available") is True
        self.known = self._loaded = True
        return self._changes_since(*before) if before is not None else []

    def apply_read(self, values: Mapping[Any, Any]) -> list[LockEvent]:
        """Take attribute values read from the lock (path -> value); report what changed."""
        before = self._states()
        self._attributes.update({str(path): value for path, value in values.items()})
        return self._changes_since(*before)

    def attribute_updated(self, data: Any) -> list[LockEvent]:
        """Take an `attribute_updated` event's `[node_id, path, value]`."""
        if not (isinstance(data, list) and len(data) == 3 and data[0] == self.node_id):
            return []
        door_before = self.door_state
        self._attributes[str(data[1])] = data[2]
        return [DoorStateChange(self.door_state)] if self.door_state != door_before else []

    def node_event(self, data: Any) -> list[tuple[LockEvent, Origin]]:
        """Take a `node_event` event's data: a MatterNodeEvent."""
        if not isinstance(data, Mapping) or data.get("node_id") != self.node_id:
            return []
        if not self._is_new(data.get("event_number")):
            self.replays_dropped += 1
            return []  # replayed by a resubscription: history, not news
        if (data.get("endpoint_id"), data.get("cluster_id")) != (self.endpoint, DOOR_LOCK_CLUSTER):
            return []
        fields = data.get("data")
        handlers: dict[object, Callable[[Mapping[str, Any]], list[LockEvent]]] = {
            DoorLockEventId.DOOR_LOCK_ALARM: self._alarm,
            DoorLockEventId.DOOR_STATE_CHANGE: self._door_state_change,
            DoorLockEventId.LOCK_OPERATION: self._lock_operation,
            DoorLockEventId.LOCK_OPERATION_ERROR: self._lock_operation_error,
        }
        handler = handlers.get(data.get("event_id"))
        if handler is None:
            return []
        fields = fields if isinstance(fields, Mapping) else {}
        origin = self._origin(fields)
        return [(event, origin) for event in handler(fields)]

    # --- the node's event numbers ---------------------------------------------------------

    @property
    def event_mark(self) -> int | None:
        """The highest event number seen from the node in this commissioning, if any."""
        return self._last_event_number

    def recall_event_mark(self, event_number: int) -> None:
        """Take `event_number` as seen: the highest seen before, kept by the driver."""
        if self._last_event_number is None or event_number > self._last_event_number:
            self._last_event_number = event_number

    # --- state --------------------------------------------------------------------------

    @property
    def lock_state(self) -> LockState:
        value = self._door_lock(DoorLockAttribute.LOCK_STATE)
        return _enum(LockState, value, LockState.NOT_FULLY_LOCKED)

    @property
    def door_state(self) -> DoorState:
        value = self._door_lock(DoorLockAttribute.DOOR_STATE)
        return _enum(DoorState, value, DoorState.UNSPECIFIED_ERROR)

    @property
    def battery_percent(self) -> int:
        half = self._attributes.get(self._path(POWER_SOURCE_CLUSTER, _BAT_PERCENT))
        if _is_int(half):
            return max(0, min(100, half // 2))
        level = self._attributes.get(self._path(POWER_SOURCE_CLUSTER, _BAT_CHARGE_LEVEL))
        return _CHARGE_LEVEL_PERCENT.get(level, 100) if _is_int(level) else 100

    @property
    def fabric_index(self) -> Any:
        """The server's fabric as the lock numbers it: CurrentFabricIndex (0/62/5)."""
        path = attribute_path(ROOT_ENDPOINT, OPERATIONAL_CREDENTIALS_CLUSTER, CURRENT_FABRIC_INDEX)
        return self._attributes.get(path)

    @property
    def requires_pin(self) -> bool:
        """RequirePINforRemoteOperation: LockDoor/UnlockDoor must carry a valid PIN."""
        return self._door_lock(DoorLockAttribute.REQUIRE_PIN_FOR_REMOTE_OPERATION) is True

    @property
    def pin_length(self) -> tuple[int, int] | None:
        """(MinPINCodeLength, MaxPINCodeLength), when the lock reports both."""
        shortest = self._door_lock(DoorLockAttribute.MIN_PIN_CODE_LENGTH)
        longest = self._door_lock(DoorLockAttribute.MAX_PIN_CODE_LENGTH)
        return (shortest, longest) if _is_int(shortest) and _is_int(longest) else None

    def lock_paths(self, *attributes: DoorLockAttribute) -> list[str]:
        """The node-dump keys of Door Lock attributes on this endpoint."""
        return [self._path(DOOR_LOCK_CLUSTER, attribute) for attribute in attributes]

    # --- the lock's events --------------------------------------------------------------

    def _alarm(self, fields: Mapping[str, Any]) -> list[LockEvent]:
        alarm = _enum(AlarmCode, fields.get("alarmCode"), None)
        if alarm is None:
            return []
        if alarm == AlarmCode.LOCK_JAMMED:
            self.jammed = True
        return [DoorLockAlarm(alarm)]

    def _door_state_change(self, fields: Mapping[str, Any]) -> list[LockEvent]:
        door_state = _enum(DoorState, fields.get("doorState"), None)
        if door_state is None or door_state == self.door_state:
            return []  # unknown, or reported already from the DoorState attribute
        self._set(DoorLockAttribute.DOOR_STATE, door_state)
        return [DoorStateChange(door_state)]

    def _lock_operation(self, fields: Mapping[str, Any]) -> list[LockEvent]:
        operation = _enum(LockOperationType, fields.get("lockOperationType"), None)
        if operation is None:
            return []
        lock_state = _STATE_AFTER.get(operation)
        if lock_state is not None:
            self._set(DoorLockAttribute.LOCK_STATE, lock_state)
            self.jammed = False
        return [LockOperation(operation, _source(fields))]

    def _lock_operation_error(self, fields: Mapping[str, Any]) -> list[LockEvent]:
        operation = _enum(LockOperationType, fields.get("lockOperationType"), None)
        if operation is None:
            return []
        error = _enum(OperationError, fields.get("operationError"), OperationError.UNSPECIFIED)
        return [LockOperationError(operation, _source(fields), error)]

    # --- helpers ------------------------------------------------------------------------

    def _origin(self, fields: Mapping[str, Any]) -> Origin:
        """Whose command an event's FabricIndex and SourceNode name. A value the hub's
        side lacks (a dump without CurrentFabricIndex) is matched by none."""
        named = (fields.get("fabricIndex"), fields.get("sourceNode"))
        hubs = (self.fabric_index, self.controller_node_id)
        for value, hub in zip(named, hubs, strict=True):
            if value is not None and not (_is_int(value) and value == hub):
                return Origin.OTHER
        return Origin.UNNAMED if None in named else Origin.HUB

    def _is_new(self, event_number: object) -> bool:
        """Whether an event numbered `event_number` comes after every one seen; it then
        becomes the highest seen."""
        if not _is_int(event_number):
            return True
        if self._last_event_number is not None and event_number <= self._last_event_number:
            return False
        self._last_event_number = event_number
        return True

    def _commissioned_as(self, commissioned: str | None) -> None:
        if commissioned != self.commissioned:
            self._last_event_number = None  # commissioned again: the lock counts anew
            self.commissioned = commissioned

    def _states(self) -> tuple[LockState, DoorState]:
        return self.lock_state, self.door_state

    def _changes_since(self, lock_before: LockState, door_before: DoorState) -> list[LockEvent]:
        events: list[LockEvent] = []
        operation = _OPERATION_TO.get(self.lock_state)
        if self.lock_state != lock_before and operation is not None:
            self.jammed = False
            events.append(LockOperation(operation, OperationSource.UNSPECIFIED))
        if self.door_state != door_before:
            events.append(DoorStateChange(self.door_state))
        return events

    def _path(self, cluster: int, attribute: int) -> str:
        return attribute_path(self.endpoint, cluster, attribute)

    def _door_lock(self, attribute: DoorLockAttribute) -> Any:
        return self._attributes.get(self._path(DOOR_LOCK_CLUSTER, attribute))

    def _set(self, attribute: DoorLockAttribute, value: IntEnum) -> None:
        self._attributes[self._path(DOOR_LOCK_CLUSTER, attribute)] = int(value)


_BAT_PERCENT = PowerSourceAttribute.BAT_PERCENT_REMAINING
_BAT_CHARGE_LEVEL = PowerSourceAttribute.BAT_CHARGE_LEVEL


def _source(fields: Mapping[str, Any]) -> OperationSource:
    return _enum(OperationSource, fields.get("operationSource"), OperationSource.UNSPECIFIED)


def _enum(kind: type[_E], value: object, default: _D) -> _E | _D:
    if _is_int(value):
        try:
            return kind(value)
        except ValueError:
            pass
    return default


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
