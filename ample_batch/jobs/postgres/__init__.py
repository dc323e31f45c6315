"""The PostgreSQL job store and job locks, for state shared by many hosts (`store.PgStore`,
`locks.PgLocks`; the connection and its retries in `conn`). psycopg, the optional `postgres`
extra, is imported inside functions only, so `import ample_batch` works without it."""
