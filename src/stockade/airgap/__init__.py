"""Air-gapped operation (SPEC §9): package bundles, their format, export and import."""
