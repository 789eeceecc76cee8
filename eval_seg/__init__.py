"""Downstream referring-segmentation evaluation (mIoU / IoU_BIN).

Not implemented yet: no issue has scheduled it. The metric definitions it will follow are in DESIGN.md
("mIoU / IoU_BIN"); `integrations.swap_clipseg_text_encoder` already puts an encoder into CLIPSeg.
"""
