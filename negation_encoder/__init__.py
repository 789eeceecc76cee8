"""negation_encoder: build negation data, fine-tune CLIP text encoders, evaluate and publish them.

    from negation_encoder.data import NegationRecord, RecordWriter, read_records
    from negation_encoder.training import TrainConfig, train
    from negation_encoder.eval import existence_accuracy, mcq_scores, recall_at_k
    from negation_encoder.checkpoint import publish
    from negation_encoder import split_negation  # "a street with no cars" -> "a street" minus ["cars"]
"""

from .splitting import split_negation as split_negation

__version__ = "0.1.0"
