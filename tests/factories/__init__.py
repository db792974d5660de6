"""Factories that build test data."""
