"""Configuration: fail2ban-style INI files turned into validated, frozen settings."""

from tailban.config.errors import ConfigError

__all__ = ["ConfigError"]
