"""Labelling: label schemas (segments, codes, tools, required attributes) and the labelling commands."""
