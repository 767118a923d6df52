"""Stages of the image-classifier pipeline with embedding-drift monitoring."""

__version__ = "0.1.0"
