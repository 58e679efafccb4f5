"""The parts of the Matter lock driver; import them from `drivers.matter`.

- `client`: the python-matter-server WebSocket API client (connection, answers, reconnects).
- `cluster`: Door Lock cluster ids, enums and command payloads, as pure functions.
- `node`: one lock node's attributes, and what the server's messages mean as lock events.
- `config`: the driver's config mapping and its validated settings.
"""
