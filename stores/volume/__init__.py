"""A plain protected data volume (SQLite files, uploads): no container, its files and SQLite
databases (copied with VACUUM INTO) backed up."""
