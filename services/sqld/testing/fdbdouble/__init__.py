"""The FoundationDB TEST DOUBLE: a gRPC server keeping FoundationDB's semantics in memory, and its client (tests and local runs only)."""
