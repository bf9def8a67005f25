"""Validation: a dataset checked the way a strict consumer would (``validate`` command), one
checker per output format."""
