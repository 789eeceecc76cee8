"""The encoder checkpoint folder: its layout, the export, the model card and Hub publishing."""

from . import layout
from .card import build_model_card, compatibility, is_generated_card, usage_snippets, write_model_card
from .export import export_checkpoint, text_encoder_state_dict, write_eval_results
from .publish import PublishResult, publish

__all__ = ["PublishResult", "build_model_card", "compatibility", "export_checkpoint", "is_generated_card", "layout",
           "publish", "text_encoder_state_dict", "usage_snippets", "write_eval_results", "write_model_card"]
