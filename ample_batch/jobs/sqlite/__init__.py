"""The SQLite job store, the default backend: one file in the state dir, shared by every
process on the machine (`store.Store`; schema and migrations in `db`)."""
