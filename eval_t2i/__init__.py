"""Downstream text-to-image evaluation (Neg Score, TIFA-style scoring).

Not implemented yet: no issue has scheduled it. The scoring rules it will follow are in DESIGN.md
("Neg Score", "TIFA"); the tiny offline BLIP judge it will test with is `negation_encoder.testing.tiny.build_blip_vqa`.
"""
