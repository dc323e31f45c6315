"""The PostgreSQL server fixtures (tests/postgres_server.py) for these tests."""

from postgres_server import pg_url, postgres_server

__all__ = ["pg_url", "postgres_server"]
