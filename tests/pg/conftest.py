"""The PostgreSQL server fixtures (`pg_url`, `postgres_server`) are in tests/conftest.py."""
