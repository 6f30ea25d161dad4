"""Backbones and the BatchFormer classifier."""
