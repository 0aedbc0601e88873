"""Experiments that train several models and compare them; each is a ``python -m`` command."""
