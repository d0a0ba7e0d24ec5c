"""A tiny shop used by the SDK tests: business code in `payment` and `order`, a Flask app and a Starlette app."""
