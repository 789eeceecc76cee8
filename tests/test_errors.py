"""The typed input errors: which kind each bad input raises, and that the CLI answers every kind with exit 2."""

import json

import pytest

from negation_encoder.errors import ConfigError, DataError, IncompatibleModelError, InputError


@pytest.mark.parametrize("cls", [ConfigError, DataError, IncompatibleModelError])
def test_every_kind_is_an_input_error_and_a_value_error(cls):
    assert issubclass(cls, InputError) and issubclass(cls, ValueError)


def test_a_bad_config_value_is_a_config_error():
    from negation_encoder.data.pipelines import PipelineConfig

    with pytest.raises(ConfigError, match="pipeline must be one of p1, rand_p1, p2, presence"):
        PipelineConfig(pipeline="p9")


def test_bad_results_and_records_are_data_errors(tmp_path):
    from negation_encoder.checkpoint.export import write_eval_results
    from negation_encoder.results import make_results, read_results
    from negation_encoder.split_scorer import fit_split_weight_on_records

    with pytest.raises(DataError, match="unregistered result key"):
        make_results({"world_mcq": 0.5, "my_metric": 0.1})
    with pytest.raises(DataError, match="must be numbers"):
        make_results({"world_mcq": "high"})
    (tmp_path / "eval_results.json").write_text(json.dumps({"schema": "other/v0"}))
    with pytest.raises(DataError, match="not an eval_results.json of schema"):
        read_results(tmp_path / "eval_results.json")
    with pytest.raises(DataError, match="eval results must follow"):
        write_eval_results(tmp_path, {"world_mcq": 0.5})
    from negation_encoder.data import NegationRecord, RecordError

    assert issubclass(RecordError, DataError)
    with pytest.raises(DataError, match="negation_type"):
        NegationRecord("r", "i.png", "a dog", "a dog, no cat", "maybe", "cat", "p1")
    with pytest.raises(DataError, match="no record with foils"):
        fit_split_weight_on_records(None, None, None, [], load_image=None)


def test_bad_arguments_to_the_integrations_are_input_errors():
    from integrations import load_negation_text_encoder, segment
    from integrations.routes import negation_prompts

    with pytest.raises(InputError, match="role must be one of"):
        load_negation_text_encoder("unused", role="unet")
    with pytest.raises(InputError, match="route must be one of plain, split"):
        segment(None, None, [], [], route="product")
    with pytest.raises(InputError, match="one image per text: 1 images, 2 texts"):
        segment(None, None, [object()], ["a", "b"])
    with pytest.raises(InputError, match="2 given for 1 prompts"):
        negation_prompts(["a dog"], ["x", "y"])


def test_the_cli_answers_a_data_error_with_exit_2(tmp_path, capsys):
    from negation_encoder.cli import main

    folder = tmp_path / "enc"
    (folder / "text_encoder").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))  # a checkpoint by its configs
    (folder / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    (folder / "eval_results.json").write_text(json.dumps({"schema": "negation-encoder/eval-results/v1",
                                                          "my_metric": 0.1}))
    assert main(["publish", str(folder), "--repo-id", "org/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("negenc: error: ") and "unregistered result key(s) my_metric" in err
