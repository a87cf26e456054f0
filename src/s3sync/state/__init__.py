"""The state store: what the mirror holds (SQLite rows) and the journal of accepted events."""
