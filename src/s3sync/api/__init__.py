"""The HTTP API: composition root (app.py), thin handlers, schemas, auth, OpenAPI."""
