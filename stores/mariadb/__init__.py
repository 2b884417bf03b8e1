"""MariaDB (the official image): tuned from its memory limit, dumped with mariadb-dump
--single-transaction into restic, watched by prom/mysqld-exporter."""
