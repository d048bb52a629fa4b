"""The ASGI scoring app: parse a request -> predict -> serialise the answer."""
