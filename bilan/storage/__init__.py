"""Storage: the database, its tables and migrations, and the resource store."""
