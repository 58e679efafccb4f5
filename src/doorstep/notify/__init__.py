"""Telling people what happened: carrier webhooks and resident email, through an outbox.

A state change and the messages about it are written in the same transaction (the
`outbox` table), so a message is never lost to a crash between the two; the dispatcher
(`dispatcher.Dispatcher`) sends what is due, retries with backoff, and records the outcome.
Each message has a stable event id, so a receiver that sees it twice can tell.
"""
