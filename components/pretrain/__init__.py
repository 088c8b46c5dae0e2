"""The pretrain component."""
