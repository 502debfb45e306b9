"""The control socket: a small JSON request/response protocol between CLI and daemon."""
