"""The mvsqlite backend: SQLite pages in FoundationDB (see services/sqld/storage/DESIGN.md)."""
