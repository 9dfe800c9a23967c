import dataclasses
import json

import pytest
import yaml

from unslothify import recipes
from unslothify.config import Config, ConfigError, knob_fields, load_config, recipe_of, replace, save_config


def test_defaults_are_the_dataclass_defaults_for_a_named_hub_model_on_a_cpu():
    cfg = load_config(None, model="some/hub-model")
    assert cfg == Config(model="some/hub-model")
    assert recipe_of(cfg) == (None, "some/hub-model on a CPU: no recipe, the defaults of config.py")


def test_embedded_model_gets_its_cpu_recipe_unless_overridden(tmp_path):
    cfg = load_config(None, model="embedded")
    assert recipe_of(cfg) == ("smollm2-cpu", "the embedded model on a CPU")
    for key, value in recipes.read("smollm2-cpu").items():
        assert getattr(cfg, key) == value
    assert load_config(None, model="embedded", learning_rate=1e-4).learning_rate == 1e-4
    path = tmp_path / "c.yaml"
    path.write_text("model: embedded\nlora_r: 8\n")
    assert load_config(path).lora_r == 8, "config.yaml overrides the recipe"
    assert load_config(None, model="embedded", recipe="none") == Config(model="embedded", recipe="none")
    named = load_config(None, model="embedded", recipe="mistral-7b-lora-16bit")
    assert (named.load_in_4bit, named.max_seq_length) == (False, 2048) and named.model == "embedded"
    with pytest.raises(ConfigError, match="no such recipe; there are mistral-7b, mistral-7b-lora-16bit"):
        load_config(None, recipe="fastest")


def test_a_saved_version_takes_its_base_models_recipe(tmp_path):
    """`eval --model runs/x/v001` weighs the version by the adapter_scale `run` scored it at: the recipe follows
    the model the version was trained from (the embedded one here), for a version and for its run folder."""
    from unslothify.model.embedded import EMBEDDED_NAME

    base = tmp_path / EMBEDDED_NAME
    base.mkdir()
    (base / "unslothify_source.json").write_text("{}")
    version = tmp_path / "run" / "v001"
    version.mkdir(parents=True)
    (version / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (version / "manifest.json").write_text("{}")  # a folder without its manifest is not a version (runs.Run)
    for model in (version, version.parent):
        cfg = load_config(None, model=str(model))
        assert recipe_of(cfg) == ("smollm2-cpu", "the embedded model on a CPU")
        assert cfg.adapter_scale == recipes.read("smollm2-cpu")["adapter_scale"]
    (version / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "some/hub-model"}))
    assert recipe_of(load_config(None, model=str(version)))[0] is None, "another base: its own recipe (none on a CPU)"


def test_a_recipe_holds_only_what_it_chooses_and_shares_a_base_where_recipes_agree():
    """One home per value: a recipe line that restated a default would be a second home for it (the defaults are
    the libraries' own); the two 7B recipes and the two embedded ones take what they share from a base file."""
    defaults = Config()
    for name in recipes.available():
        own = yaml.safe_load(recipes.path_of(name).read_text()) or {}
        restated = {k: v for k, v in own.items() if k != recipes.BASE_KEY and getattr(defaults, k) == v}
        assert not restated, f"{name} restates defaults: {restated}"
    qlora, sixteen = recipes.read("mistral-7b-qlora"), recipes.read("mistral-7b-lora-16bit")
    shared = {k: v for k, v in qlora.items() if sixteen.get(k) == v}
    assert shared == recipes.read("mistral-7b"), "what the 7B recipes share lives in their base"
    assert recipes.reasons("mistral-7b-qlora")["learning_rate"].startswith("Unsloth's notebooks' 2e-4")
    cpu, gpu = recipes.read("smollm2-cpu"), recipes.read("smollm2-gpu")
    assert {k: v for k, v in cpu.items() if gpu.get(k) == v} == recipes.read("smollm2")


def test_every_recipe_knob_is_a_knob_with_a_reason():
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name in recipes.available():
        values, why = recipes.read(name), recipes.reasons(name)
        assert values and set(values) <= set(fields), name
        assert set(why) == set(values), f"{name}: every knob says why it has its value"
        Config(**{k: v for k, v in values.items()})  # valid types
        load_config(None, recipe=name)  # and valid ranges


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: embedded\nlora_r: 8\nnum_train_epochs: 2\naugment:\n  rephrasings: 3\n")
    cfg = load_config(path, num_train_epochs=5, lora_alpha=None)
    assert (cfg.lora_r, cfg.num_train_epochs, cfg.augment.rephrasings) == (8, 5.0, 3)


def test_save_and_load_round_trip(tmp_path):
    cfg = replace(load_config(None, model="embedded"), lora_r=4, learning_rate=3e-4, target_modules=["q_proj"])
    path = save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(path) == cfg
    assert set(yaml.safe_load(path.read_text())) == {f.name for f in dataclasses.fields(Config)}


@pytest.mark.parametrize("key,value,expect", [
    ("learning_rate", 5.0, "learning_rate = 5.0 is not valid; allowed: a number from 1e-06 to 0.01"),
    ("lora_r", 0, "lora_r = 0 is not valid; allowed: a whole number from 1 to 256"),
    ("lora_r", 2.5, "lora_r = 2.5 is not valid"),
    ("lora_dropout", "lots", "lora_dropout = 'lots' is not valid; allowed: a number from 0 to 0.5"),
    ("lr_scheduler_type", "zigzag", "allowed: one of linear, cosine"),
    ("packing", "maybe", "packing = 'maybe' is not valid; allowed: true or false"),
    ("validation_split", 0.9, "validation_split = 0.9 is not valid; allowed: a number from 0 to 0.5"),
    ("num_train_epochs", float("nan"), "num_train_epochs = nan is not valid"),
])
def test_bad_values_name_the_knob_and_its_range(key, value, expect):
    with pytest.raises(ConfigError) as e:
        load_config(None, model="embedded", **{key: value})
    assert expect in str(e.value)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lerning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value) and "unknown key 'lerning_rate'" in str(e.value)


def test_unknown_augment_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("augment:\n  paraphrases: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'paraphrases'"):
        load_config(path)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_every_knob_has_help_and_ranged_numbers_have_ranges():
    for f in knob_fields():
        assert f.metadata["help"], f.name
        t = f.type if isinstance(f.type, str) else f.type.__name__
        if t in ("int", "float"):
            assert f.metadata["lo"] is not None and f.metadata["hi"] is not None, f.name


def test_shipped_config_yaml_loads(root):
    cfg = load_config(root / "config.yaml")
    assert cfg.data == "domain.jsonl"


@pytest.mark.parametrize("f", [f for f in knob_fields() if f.metadata["lo"] is not None], ids=lambda f: f.name)
def test_every_ranged_knob_rejects_out_of_range_and_wrong_type(f):
    with pytest.raises(ConfigError) as e:
        load_config(None, model="embedded", **{f.name: f.metadata["hi"] * 10 + 1})
    assert f"{f.name} = " in str(e.value) and f"to {f.metadata['hi']:g}" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, model="embedded", **{f.name: "lots"})
    assert f"{f.name} = 'lots' is not valid" in str(e.value)


def test_mapping_and_list_knobs_from_yaml_and_flags(tmp_path):
    from unslothify.cli import config_from_args, build_parser

    path = tmp_path / "c.yaml"
    path.write_text("columns: {q: question, a: answer}\nreport_to: tensorboard\nchat_template: chatml\n")
    cfg = load_config(path, model="embedded")
    assert (cfg.columns, cfg.report_to, cfg.chat_template) == ({"q": "question", "a": "answer"}, ["tensorboard"], "chatml")
    assert load_config(save_config(cfg, tmp_path / "saved.yaml")) == cfg
    args = build_parser().parse_args(["prepare", "--config", str(path), "--columns", "prompt=question,reply=answer",
                                      "--report-to", "tensorboard,wandb", "--chat-template", "auto"])
    cfg = config_from_args(args)
    assert cfg.columns == {"prompt": "question", "reply": "answer"} and cfg.report_to == ["tensorboard", "wandb"]
    assert cfg.chat_template == "auto"
    assert Config().report_to == ["none"] and Config().columns == {}
    with pytest.raises(ConfigError, match="columns = 'q' is not valid; allowed: a mapping of names to names"):
        load_config(None, model="embedded", columns="q")
    with pytest.raises(ConfigError, match="report_to = \\['wandb', 'comet'\\] is not valid"):
        load_config(None, model="embedded", report_to=["wandb", "comet"])
