"""Experiments on the world, each runnable as `python -m negation_testbed.experiments.<name>`: the
diagnoses of what limits negated retrieval (`diagnose_retrieval`) and the segmenter's object choice
(`diagnose_seg`)."""
