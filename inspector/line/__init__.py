"""Outputs that hand each verdict to the line: MQTT (`mqtt`), a webhook (`webhook`), all sending
the one versioned JSON payload of `payload`. Each is a durable output of the daemon's outputs
seam (`inspector.daemon.outputs`): its outbox entry is committed with the verdict and marked
delivered only once the broker acknowledged it (PUBACK) or the webhook answered 2xx."""
