"""Vulnerability intelligence (SPEC §7): feeds, name mapping, matching, curation, reports."""
