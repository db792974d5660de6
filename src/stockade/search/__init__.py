"""Search across the channels a caller can read (SPEC §10): index, query, "where is X"."""
