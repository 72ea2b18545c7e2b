import pytest

from configurator import configure, find_config_file, overrides
from haikugpt.files import ROOT

DEFAULTS = {"batch_size": 12, "learning_rate": 6e-4, "compile": True, "init_from": "scratch", "device": None}


def test_overrides_are_typed_like_the_defaults():
    config = configure(DEFAULTS, ["--batch_size=32", "--learning_rate=1", "--compile=False", "--init_from=gpt2"])
    assert config == {"batch_size": 32, "learning_rate": 1.0, "compile": False, "init_from": "gpt2", "device": None}
    assert isinstance(config["learning_rate"], float)
    assert configure(DEFAULTS, ["--batch_size=1e3"])["batch_size"] == 1000  # a whole float is a fine int
    assert configure(DEFAULTS, ["--compile=true"])["compile"] is True


def test_none_defaults_take_any_literal_and_strings_keep_equals_signs():
    assert configure(DEFAULTS, ["--device=cuda:1"])["device"] == "cuda:1"
    assert configure(DEFAULTS, ["--device=3"])["device"] == 3
    assert configure(DEFAULTS, ["--init_from=a=b=c"])["init_from"] == "a=b=c"
    assert configure(DEFAULTS, ["--init_from=2024"])["init_from"] == "2024"  # a string key keeps the text
    assert configure(DEFAULTS, ["--init_from='quoted'"])["init_from"] == "quoted"


def test_unknown_key_names_the_nearest(tmp_path):
    with pytest.raises(
        ValueError, match="unknown config key 'batchsize' on the command line; did you mean 'batch_size'"
    ):
        configure(DEFAULTS, ["--batchsize=3"])
    cfg = tmp_path / "c.py"
    cfg.write_text("learning_rat = 1e-3\n")
    with pytest.raises(ValueError, match=r"'learning_rat' in .*c\.py; did you mean 'learning_rate'"):
        configure(DEFAULTS, [str(cfg)])


def test_wrong_types_and_malformed_arguments():
    for arg in ["--batch_size=2.5", "--compile=maybe", "--learning_rate=fast", "--batch_size=True"]:
        with pytest.raises(ValueError, match="expects"):
            configure(DEFAULTS, [arg])
    with pytest.raises(ValueError, match="expected --key=value"):
        configure(DEFAULTS, ["--compile"])


def test_config_files_apply_in_order_and_skip_imports(tmp_path, monkeypatch):
    first = tmp_path / "first.py"
    first.write_text("import math\n_scale = 2\nbatch_size = 4 * _scale\nlearning_rate = math.pi\n")
    config = configure(DEFAULTS, [str(first), "--batch_size=3"])
    assert config["batch_size"] == 3 and config["learning_rate"] == pytest.approx(3.14159, abs=1e-5)
    assert configure(DEFAULTS, ["--batch_size=3", str(first)])["batch_size"] == 8  # later arguments win
    monkeypatch.chdir(tmp_path)
    assert configure(DEFAULTS, ["first.py"])["batch_size"] == 8  # relative to the current directory


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="config file 'nope.py' not found"):
        configure(DEFAULTS, ["nope.py"])
    broken = tmp_path / "broken.py"
    broken.write_text("batch_size = \n")
    with pytest.raises(ValueError, match="broken.py failed: SyntaxError"):
        configure(DEFAULTS, [str(broken)])


def test_paths_fall_back_to_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config_file("configurator.py") == ROOT / "configurator.py"
    (tmp_path / "configurator.py").write_text("")
    assert find_config_file("configurator.py").resolve() == tmp_path / "configurator.py"  # the current directory first


def test_overrides_are_the_keys_the_arguments_set(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("batch_size = 4\n")
    assert overrides(DEFAULTS, [str(cfg), "--compile=False"]) == {"batch_size": 4, "compile": False}
    assert overrides(DEFAULTS, []) == {}


def test_help_prints_the_doc_then_each_key_with_its_default_and_comment(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text("DEFAULTS = dict(\n    # data\n    batch_size=12,  # sequences per step\n    compile=True,\n)\n")
    with pytest.raises(SystemExit) as e:
        configure({"batch_size": 12, "compile": True}, ["--batch_size=3", "--help"], "Train.\n", (script,))
    assert e.value.code == 0
    assert capsys.readouterr().out.splitlines() == [
        "Train.",
        "",
        "Keys, set by config files (plain Python) or --key=value, later ones winning:",
        "  # data",
        "  --batch_size=12  sequences per step",
        "  --compile=True",
    ]
