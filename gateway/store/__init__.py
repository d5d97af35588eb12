"""The SQLite database: migrations, group commit and ACKs, the outbox."""
