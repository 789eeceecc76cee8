import json
import subprocess
import sys

import pytest

from negation_encoder.cli import main


def _good(tmp_path):
    p = tmp_path / "good.jsonl"
    rows = []
    for i, (src, typ) in enumerate([("p1", "absence"), ("p1", "absence"), ("p2", "attribute"), ("presence", "presence")]):
        rows.append(json.dumps({"id": f"x{i}", "image": "a.png", "caption": "c", "negated_caption": "no c",
                                "negation_type": typ, "negated_concept": "c", "source": src}))
    p.write_text("\n".join(rows) + "\n")
    return p


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "data", "train", "testbed"):
        assert cmd in out


def test_validate_good_file_prints_counts(tmp_path, capsys):
    assert main(["data", "validate", str(_good(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "4 valid records" in out
    assert "| p1 | 2 | 0 | 0 | 2 |" in out  # columns: absence, attribute, presence


def test_validate_bad_file_one_line_exit_2(tmp_path):
    p = _good(tmp_path)
    p.write_text(p.read_text() + '{"id": "x9", "image": "a.png"}\n')
    res = subprocess.run([sys.executable, "-m", "negation_encoder", "data", "validate", str(p)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert f"{p}:5:" in res.stderr and "missing required field" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_arguments_exit_2_with_one_line(capsys):
    assert main(["data", "validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "required" in err
    assert main(["no-such-command"]) == 2


def test_missing_file_exit_2(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_version_and_defaults_in_help(capsys):
    from negation_encoder import __version__

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"negenc {__version__}"
    assert main(["testbed", "seg-compare", "--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: 400)" in text and "(default: 32)" in text, text


def _printed(name, tmp_path, capsys):
    from negation_encoder.training import TrainConfig

    assert main(["train", "--print-config", name]) == 0
    path = tmp_path / "cfg.yaml"
    path.write_text(capsys.readouterr().out)
    return TrainConfig.from_file(path), path.read_text().splitlines()


@pytest.mark.parametrize("name", ["sd1", "sd2", "sdxl", "sd3", "flux", "clipseg", "retrieval", "real"])
def test_print_config_of_a_pipeline_target_names_its_reading_and_comments_each_term(name, tmp_path, capsys):
    from negation_encoder.training.starters import ALIASES

    cfg, lines = _printed(name, tmp_path, capsys)
    target = ALIASES.get(name, name)
    assert cfg.model.base.startswith(("openai/", "laion/")) and cfg.data.files
    if target != "retrieval":
        assert cfg.pipeline.family == target
    for term in cfg.enabled_terms():  # a comment on the term's line or the next: what it is for, what data
        at = next(i for i, x in enumerate(lines) if x.strip().startswith(f"{term}:"))
        assert "#" in lines[at] or "#" in lines[at + 1], term


@pytest.mark.parametrize("name", ["default", "contrastive", "omni-front"])
def test_print_config_of_a_testbed_recipe_is_that_recipe(name, tmp_path, capsys):
    from negation_testbed.recipes import get_recipe

    cfg, _ = _printed(name, tmp_path, capsys)
    assert cfg.model.base and cfg.data.files and cfg.run.recipe == name
    assert set(cfg.enabled_terms()) == set(get_recipe(name).config["objective"])


def test_print_config_names_what_it_takes(capsys):
    assert main(["train", "--print-config", "nope"]) == 2
    assert "expected a target (sd1, sd2, sdxl, sd3, flux, clipseg, retrieval) or a testbed recipe" in \
        capsys.readouterr().err
