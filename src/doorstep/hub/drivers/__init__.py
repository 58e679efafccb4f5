"""Lock drivers: each maps one kind of device onto the hub's lock model (`hub.lock`).

- `simulated`: a lock with motor time, jams, battery and a door sensor, for tests,
  benchmarks and the demo.
- `matter`: a Matter door lock through a python-matter-server's WebSocket API (`websockets`).
- `zigbee2mqtt`: a Zigbee lock (and optional contact sensor) through Zigbee2MQTT's MQTT
  topics (`paho-mqtt`); its parts are in `_zigbee2mqtt/`.

Each driver lives in its own module and is imported from there, so loading one never
pulls in another's dependencies.
"""
