"""The kb component."""
