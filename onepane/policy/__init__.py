"""Policies and service levels."""
