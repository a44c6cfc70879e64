"""JSON API under ``/api/v1/`` (schemas in ``schemas.py``)."""
