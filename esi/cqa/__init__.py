"""Cardio Query Assistant: condition vocabulary, label harmonisation, knowledge base and captions."""
