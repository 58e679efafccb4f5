"""The parts of the Zigbee2MQTT lock driver; import them from `drivers.zigbee2mqtt`.

- `config`: the driver's config mapping and its validated settings.
- `payloads`: what Zigbee2MQTT's payloads mean, as pure functions (no state, no I/O).
- `model`: the lock as the driver knows it, moved by readings (no I/O, no locks).
- `outbox`: ordered delivery of events outside the driver's mutex.
- `discovery`: the locks and contact sensors listed in `bridge/devices`.
"""
