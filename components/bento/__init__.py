"""The bento component."""
