"""The caption component."""
