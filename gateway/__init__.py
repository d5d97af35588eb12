"""The hall gateway: ingest from evaluators, a durable SQLite outbox, and
forwarding upstream. See docs/link.md and docs/design.md §2-§5."""
