"""Persistence: the relational store (SQLite by default, PostgreSQL by URL) and the blob store."""
