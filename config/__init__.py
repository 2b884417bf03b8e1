"""The stack's desired state: pydantic models and the one loader of Pulumi config."""

from config.errors import ConfigError
from config.loader import Stack, load, parse

__all__ = ["ConfigError", "Stack", "load", "parse"]
