"""The mvsqlite backend: SQLite pages in FoundationDB (see services/storage/DESIGN.md)."""
