"""The drop-in comparisons: fine-tuned encoders swapped into the world's frozen generator
(`t2i_compare`) and segmenter (`seg_compare`), and the demo's small measurement of both (`measure`)."""
