"""Content trust (SPEC §8): conda-content-trust keys, metadata and record signatures."""
