"""`negenc split`: JSON lines from the rule splitter or an LLM (a fake chat, no network); bad input exits 2."""

import json

import pytest

from negation_encoder.cli import main
from negation_encoder.splitting import NegationSplit, split_negation


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_split_prints_one_json_object_per_text(capsys):
    texts = ["a lake with no boats at sunset", "a no parking zone", "a cat not on the sofa"]
    assert main(["split", *texts]) == 0
    out = _lines(capsys)
    assert [NegationSplit.from_dict(d) for d in out] == [split_negation(t) for t in texts]
    assert (out[0]["affirmative"], out[0]["negated"], out[0]["is_bare"]) == ("a lake at sunset", ["boats"], False)
    assert out[1]["has_negation"] is False and out[1]["concepts"] == []
    assert out[2]["concepts"] == [{"text": "cat on the sofa", "type": "relation", "cue": "not"}]


def test_split_says_why_it_leaves_a_text_whole(capsys):
    assert main(["split", "a room with nobody except a guard", "a street with no cars"]) == 0
    unsure, plain = _lines(capsys)
    assert (unsure["affirmative"], unsure["has_negation"]) == ("a room with nobody except a guard", False)
    assert "names what is there" in unsure["unsure"] and plain["unsure"] is None


class _Chat:
    name = "fake-chat"

    def chat(self, conversations, max_new_tokens=64):
        answers = {"a street with no cars": '{"affirmative": "a street", "negated": '
                                            '[{"concept": "cars", "type": "object", "cue": "no"}]}'}
        return [next((a for t, a in answers.items() if f'"{t}"' in c[0]["content"]), "I cannot tell")
                for c in conversations]


def test_split_with_an_llm_backend_built_like_generate_and_its_fallbacks(capsys, monkeypatch):
    from negation_encoder.cli import generate

    seen = {}

    def fake_make_llm(spec, args):
        seen["spec"], seen["timeout"] = spec, args.timeout
        return type("PromptedLLM", (), {"chat_backend": _Chat(), "name": "fake-chat"})()

    monkeypatch.setattr(generate, "make_llm", fake_make_llm)
    assert main(["split", "a street with no cars", "a desk with no lamp", "--llm", "openai:m@http://x/v1"]) == 0
    captured = capsys.readouterr()
    street, desk = (json.loads(line) for line in captured.out.splitlines())
    assert seen == {"spec": "openai:m@http://x/v1", "timeout": 60.0}
    assert (street["affirmative"], street["concepts"]) == ("a street", [{"text": "cars", "type": "object", "cue": "no"}])
    assert NegationSplit.from_dict(desk) == split_negation("a desk with no lamp")  # the rules answered
    assert captured.err.strip() == "negenc split: 1 of 2 model answers were malformed; the rules split those"


@pytest.mark.parametrize("argv,fragment", [
    (["split", "a dog", "  "], "TEXT 2 is empty"),
    (["split", "a dog", "--llm", "openai:no-url"], "--llm must be transformers:MODEL or openai:MODEL@URL"),
    (["split", "a dog", "--llm", "openai:m@http://x", "--prompt-version", "v9"], "--prompt-version 'v9'"),
    (["split"], "the following arguments are required: TEXT"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, fragment):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit from inside the parser
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
