"""Test and benchmark support: tiny real models built offline (`negation_encoder.testing.tiny`)."""
