"""The sandbox control API (``/_sandbox/...``, plain JSON) and its Python client."""
