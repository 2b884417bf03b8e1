"""A managed database outside the host: a secret URL, no container, backed up by its provider."""
