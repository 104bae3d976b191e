"""Config files (JSON, TOML) and flags fill the same dataclasses; bad settings name their field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textsvc.cli import build_parser, main
from textsvc.config.common import build_configs, read_config_file
from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig
from textsvc.errors import ConfigError

from conftest import LSTM, TRAINING, as_flags, sentiment_rows, write_rows

CLASSES = (DataConfig, ClassifierModelConfig, TrainingConfig)
SETTINGS = {"train_file": "train.csv", "label_names": ("neg", "pos"), "output_dir": "out", "arch": "lstm",
            "hidden_size": 16, "bidirectional": False, "dropout": 0.25, "num_train_epochs": 2,
            "learning_rate": 0.005, "resume": True, "pooling": "mean"}
TOML = """
train_file = "train.csv"
label_names = ["neg", "pos"]
output_dir = "out"
arch = "lstm"
hidden_size = 16
bidirectional = false
dropout = 0.25
num_train_epochs = 2
learning_rate = 0.005
resume = true
pooling = "mean"
"""


def from_flags(flags: list[str]) -> tuple:
    args = vars(build_parser().parse_args(["train-classifier", *flags]))
    return build_configs({k: v for k, v in args.items() if k not in ("command", "config")}, *CLASSES)


def test_json_toml_and_flags_give_the_same_configs(tmp_path):
    json_file = tmp_path / "config.json"
    json_file.write_text(json.dumps({**SETTINGS, "label_names": list(SETTINGS["label_names"])}))
    toml_file = tmp_path / "config.toml"
    toml_file.write_text(TOML)
    from_json = build_configs(read_config_file(str(json_file)), *CLASSES)
    from_toml = build_configs(read_config_file(str(toml_file)), *CLASSES)
    assert from_json == from_toml == from_flags(as_flags(SETTINGS))
    data, model, training = from_toml
    assert data.label_names == ("neg", "pos") and model.bidirectional is False and training.resume is True


def test_flags_override_the_config_file(tmp_path, capsys):
    train_file = write_rows(tmp_path / "train.csv", sentiment_rows(40, seed=7))
    config = tmp_path / "config.toml"
    file_settings = {**TRAINING, **LSTM, "num_train_epochs": 1.0, "learning_rate": 0.02, "hidden_size": 12,
                     "train_file": str(train_file), "output_dir": str(tmp_path / "from-file")}
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in file_settings.items()))
    status = main(["train-classifier", "--config", str(config), "--learning_rate", "0.005",
                   "--output_dir", str(tmp_path / "from-flags")])
    assert status == 0, capsys.readouterr().err
    assert not (tmp_path / "from-file").exists()
    info = json.loads((tmp_path / "from-flags" / "training_info.json").read_text())
    assert info["hyperparameters"]["learning_rate"] == 0.005
    assert info["hyperparameters"]["hidden_size"] == 12 and info["hyperparameters"]["num_train_epochs"] == 1.0


def test_unknown_setting(tmp_path):
    with pytest.raises(ConfigError) as error:
        build_configs({"train_file": "t.csv", "output_dir": "o", "hidden_sise": 8}, *CLASSES)
    assert (error.value.code, error.value.field) == ("unknown_setting", "hidden_sise")


def test_unknown_setting_in_config_file_through_cli(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train_file": "t.csv", "output_dir": "o", "epochs": 3}))
    assert main(["train-classifier", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [unknown_setting]: ")


@pytest.mark.parametrize("field, value", [
    ("num_train_epochs", "three"), ("bidirectional", "yes"), ("learning_rate", "3e-4"), ("learning_rate", True),
    ("max_seq_length", [1, 2]), ("hidden_size", 16.5), ("max_train_samples", "10"), ("text_column", 3),
    ("label_names", 2), ("arch", None),
])
def test_wrong_type_names_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        build_configs({"train_file": "t.csv", "output_dir": "o", field: value}, *CLASSES)
    assert error.value.field == field


@pytest.mark.parametrize("field, value", [
    ("arch", "cnn"), ("dropout", 1.5), ("embedding_dropout", -0.1), ("vocab_size", 50), ("pooling", "sum"),
    ("num_attention_heads", 3), ("num_train_epochs", 0), ("warmup_ratio", 1.0), ("precision", "fp8"),
    ("early_stopping_patience", -1), ("validation_split_percentage", 100.0), ("model_name_or_path", "scratch"),
    ("adversarial_epsilon", -0.5),
])
def test_invalid_values_raise_config_error_with_field(field, value):
    with pytest.raises(ConfigError) as error:
        build_configs({"train_file": "t.csv", "output_dir": "o", field: value}, *CLASSES)
    assert error.value.code == "invalid_config" and error.value.field == field


def test_names_given_directly_in_python_become_tuples():
    data = DataConfig(train_file="t.csv", label_names="neg, pos")
    assert data.label_names == ("neg", "pos")
    assert DataConfig(train_file="t.csv", label_names=["neg", "pos"]).label_names == ("neg", "pos")
    train = TrainingConfig(output_dir="o", teacher_model_dir="teachers/a,teachers/b")
    assert train.teacher_model_dir == ("teachers/a", "teachers/b")
    assert TrainingConfig(output_dir="o", teacher_model_dir="teacher").teacher_model_dir == ("teacher",)
    assert TrainingConfig(output_dir="o").teacher_model_dir is None


@pytest.mark.parametrize("missing", ["train_file", "output_dir"])
def test_required_settings(missing):
    values = {"train_file": "t.csv", "output_dir": "o"}
    del values[missing]
    with pytest.raises(ConfigError) as error:
        build_configs(values, *CLASSES)
    assert error.value.field == missing


@pytest.mark.parametrize("content, name", [("not = [valid", "c.toml"), ("{nope", "c.json"), ("[1, 2]", "c.json")])
def test_unreadable_config_file(tmp_path, content, name):
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError) as error:
        read_config_file(str(tmp_path / name))
    assert error.value.code == "config_file_unreadable"


def test_serving_config_from_environment_then_values():
    from textsvc.config.serving import ServingConfig, serving_env_values

    env = {"TEXTSVC_API_KEYS": "a,b", "TEXTSVC_MAX_WAIT_MS": "2.5", "TEXTSVC_WARMUP": "false",
           "TEXTSVC_MODELS_DIR": "/srv/models", "OTHER": "ignored"}
    values = serving_env_values(env)
    assert values == {"models_dir": "/srv/models", "max_wait_ms": 2.5, "api_keys": "a,b", "warmup": False}
    (config,) = build_configs({**values, "port": 9000}, ServingConfig)
    assert config.api_keys == ("a", "b") and config.port == 9000 and not config.warmup


@pytest.mark.parametrize("values, field", [
    ({"models_dir": ""}, "models_dir"),
    ({"models_dir": "m", "max_batch_size": 0}, "max_batch_size"),
    ({"models_dir": "m", "max_wait_ms": -1}, "max_wait_ms"),
    ({"models_dir": "m", "port": 70000}, "port"),
    ({"models_dir": "m", "api_keys": ("ok", "")}, "api_keys"),
])
def test_serving_config_errors_name_the_field(values, field):
    from textsvc.config.serving import ServingConfig

    with pytest.raises(ConfigError) as error:
        build_configs(values, ServingConfig)
    assert error.value.field == field


def test_serving_env_value_of_the_wrong_type():
    from textsvc.config.serving import serving_env_values

    with pytest.raises(ConfigError) as error:
        serving_env_values({"TEXTSVC_PORT": "eighty"})
    assert error.value.field == "port"


def test_textsvc_home_from_value_then_environment():
    from textsvc.config.serving import textsvc_home

    assert textsvc_home("/srv/textsvc", {"TEXTSVC_HOME": "/other"}) == Path("/srv/textsvc")
    assert textsvc_home(None, {"TEXTSVC_HOME": "/other"}) == Path("/other")
    assert textsvc_home(None, {"XDG_CACHE_HOME": "/cache"}) == Path("/cache/textsvc")
    assert textsvc_home(None, {}) == Path.home() / ".cache" / "textsvc"


@pytest.mark.parametrize("command", ["train-classifier", "train-generator", "generate", "serve"])
def test_every_flag_has_help_from_its_field(command, capsys):
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    flags = [action for action in subparsers.choices[command]._actions if action.option_strings[0].startswith("--")
             and action.dest not in ("help", "config")]
    assert flags and all(action.help for action in flags), [action.dest for action in flags if not action.help]
