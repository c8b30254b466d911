"""The HTTP layer: Flask app factory, partner and admin APIs, auth, limits, OpenAPI, gunicorn."""
