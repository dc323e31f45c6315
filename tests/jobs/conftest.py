"""The store tests' fixtures: each backend in turn (tests/store_backends.py)."""

from store_backends import backend, jobs_database, postgres_server, store_backend

__all__ = ["backend", "jobs_database", "postgres_server", "store_backend"]
