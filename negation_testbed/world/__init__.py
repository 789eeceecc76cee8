"""The world itself: scenes and their rendering, its language, the oracle backends, the fine-tuning data
made from it, and the benchmark twins and evaluation sets drawn from it."""
