"""Oracle backends: the testbed's stand-ins for the LLM and the MLLM, behind the real protocols.

The "LLM" proposes plausible absent objects from co-occurrence statistics of the caption corpus
(it never sees the image) and rewrites captions with negation in varied cue words and positions.
The "MLLM" answers presence questions from the scene annotation. Both implement
`negation_encoder.data.backends.TextLLM` / `VisionLLM`, so P1, Rand-P1, P2 and presence negation
run through the same pipeline code as with real models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from negation_encoder.data.backends import RewriteRequest
from negation_encoder.data.validation import mentions

from . import language as L
from .scenes import OBJECTS, Scene


class OracleLLM:
    name = "testbed-oracle-llm"
    prompt_version = "oracle-v1"

    def __init__(self, corpus: Iterable[str], objects: Iterable[str] = OBJECTS):
        self.objects = list(objects)
        self.count: Counter = Counter()
        self.pair: Counter = Counter()
        for caption in corpus:
            present = [o for o in self.objects if mentions(caption, o)]
            self.count.update(present)
            self.pair.update((a, b) for a in present for b in present if a != b)

    def propose_objects(self, captions: list[str], k: int) -> list[list[str] | None]:
        out = []
        for caption in captions:
            present = [o for o in self.objects if mentions(caption, o)]
            scores = {
                o: sum(self.pair[(m, o)] / max(1, self.count[m]) for m in present)
                for o in self.objects if o not in present
            }
            ranked = sorted(scores, key=lambda o: (-scores[o], o))
            out.append(ranked[:k])
        return out

    def rewrite(self, requests: list[RewriteRequest]) -> list[str | None]:
        return [self._rewrite(r) for r in requests]

    @staticmethod
    def _rewrite(r: RewriteRequest) -> str:
        if r.kind in ("absence", "presence", "affirm"):
            neg, aff = L.negation_forms(r.style)
            return (aff if r.kind == "affirm" else neg).format(caption=r.caption, concept=r.concept)
        if r.kind == "compositional":
            form = L.COMPOSITIONAL_FORMS[r.style % len(L.COMPOSITIONAL_FORMS)]
            return form.format(caption=r.caption, affirm=r.detail["affirm"], negate=r.detail["negate"])
        family = {
            "attribute": L.ATTRIBUTE_FORMS, "attribute_affirm": L.ATTRIBUTE_AFFIRM_FORMS,
            "relation": L.RELATION_FORMS, "relation_affirm": L.RELATION_AFFIRM_FORMS,
        }[r.kind]
        return family[r.style % len(family)].format(caption=r.caption, kind=r.detail["kind"], value=r.detail["value"])


class OracleMLLM:
    name = "testbed-oracle-mllm"
    prompt_version = "oracle-v1"

    def __init__(self, scenes_by_image: dict[str, Scene]):
        self.scenes = scenes_by_image

    def presence_probability(self, images: list[str], concepts: list[str]) -> list[float]:
        return [1.0 if self.scenes[img].has(c) else 0.0 for img, c in zip(images, concepts, strict=True)]
