"""Benchmarks of sqld-py against a throwaway PostgreSQL 15, in the same run (`make bench`)."""
