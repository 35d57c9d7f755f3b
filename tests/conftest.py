"""Fixtures for every test folder: one throwaway PostgreSQL server per session
(tests/pg_server.py), started only when a test asks for `pg_server` or `pg_dsn`."""

from tests.pg_server import pg_dsn_fixture, pg_server_fixture  # noqa: F401 - found by name
