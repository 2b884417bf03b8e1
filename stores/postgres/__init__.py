"""PostgreSQL (the official image): tuned from its memory limit, dumped with pg_dump into restic."""
