"""Default paths, in a module light enough for the CLI's short path to import."""

DEFAULT_CONFDIR = "/etc/tailban"
DEFAULT_SOCKET = "/run/tailban/tailban.sock"
