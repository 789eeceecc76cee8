"""The world's frozen models and the tools that measure with them: the base CLIP, the text-to-image
generator, the referring segmenter, the VQA judge, the rule-based reader, and the judge/reader audit."""
