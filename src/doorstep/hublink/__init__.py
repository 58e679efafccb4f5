"""The service's side of the MQTT link: commands out, replies and events in, acks back.

Events are stored idempotently on (hub, epoch, seq); each (hub, epoch) stream keeps a
contiguous high-water mark that is acknowledged cumulatively; a gap asks the hub to
replay from the first missing sequence number.
"""
