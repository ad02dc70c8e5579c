"""Placeholder until channel fakes land."""
