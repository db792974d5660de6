"""The JSON API under :data:`API`: one router per module, each made with ``prefix=API``."""

API = "/api/v1"
