"""Redis (the official image): AOF and RDB, a bounded memory, its RDB copied into restic after BGSAVE."""
