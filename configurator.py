"""Config files and --key=value overrides, checked against a script's defaults, nanoGPT style:

    python train.py config/train_haiku_char.py --batch_size=32 --compile=False
    python train.py --help          # the script's docstring, then every key with its default and its comment

Arguments apply in order, later ones winning; a config file is found from the current directory, then the repository
root. Unlike nanoGPT's, an unknown key is an error naming the nearest valid one, an int is accepted where a float is
expected, a key whose default is None takes any literal, and values may contain '='.
"""

import ast
import difflib
import re
import types
from pathlib import Path

from haikugpt.files import ROOT


def configure(defaults: dict, argv: list[str], doc: str = "", sources: tuple = ()) -> dict:
    """Return a copy of defaults updated by the config files and --key=value overrides in argv."""
    return {**defaults, **overrides(defaults, argv, doc, sources)}


def overrides(defaults: dict, argv: list[str], doc: str = "", sources: tuple = ()) -> dict:
    """The keys that the config files and --key=value overrides in argv set, checked against defaults. --help (or -h)
    prints doc and every key with its default and its comment in the sources that define defaults, then exits."""
    if "--help" in argv or "-h" in argv:  # `--help | head`: the caller's one_line_errors ends quietly
        print(help_text(defaults, doc, sources), flush=True)
        raise SystemExit(0)
    config = {}
    for arg in argv:
        if not arg.startswith("--"):
            items, where = read_config_file(find_config_file(arg)), f"in {arg}"
        elif "=" in arg:
            key, _, text = arg[2:].partition("=")
            items, where = {key: parse_value(text, defaults.get(key))}, "on the command line"
        else:
            raise ValueError(f"expected --key=value, got {arg!r}")
        for key, value in items.items():
            if key not in defaults:
                nearest = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.0)[0]  # cutoff 0: always one
                raise ValueError(f"unknown config key {key!r} {where}; did you mean {nearest!r}?")
            config[key] = check_value(key, value, defaults[key])
    return config


def help_text(defaults: dict, doc: str, sources: tuple) -> str:
    """doc, then one line per key: --key=default and the comment written beside it (under its section heading)."""
    notes = {}  # each key's (heading, comment) where it is first defined
    for source in sources:  # a key's line: `    key=value,  # comment`, under a comment line that heads it or not
        for m in re.finditer(r"^(?: {4}# (.+)\n)? {4}(\w+)=.*?(?:# (.*))?$", Path(source).read_text(), re.MULTILINE):
            notes.setdefault(m[2], (m[1], m[3] or ""))
    lines = [doc.strip(), "", "Keys, set by config files (plain Python) or --key=value, later ones winning:"]
    width = max(len(f"--{k}={v!r}") for k, v in defaults.items())
    for key, value in defaults.items():
        heading, comment = notes.get(key, (None, ""))
        if heading:
            lines.append(f"  # {heading}")
        lines.append(f"  {f'--{key}={value!r}':<{width}}  {comment}".rstrip())
    return "\n".join(lines)


def find_config_file(name: str) -> Path:
    for path in (Path(name), ROOT / name):
        if path.is_file():
            return path
    raise ValueError(f"config file {name!r} not found (looked in the current directory and in {ROOT})")


def read_config_file(path: Path) -> dict:
    """Run a config file and return the names it assigns (imports, functions and _private names left out)."""
    namespace: dict = {}
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    except Exception as e:  # a config file is user code: report where it broke in one line
        raise ValueError(f"config file {path} failed: {type(e).__name__}: {e}") from e
    skip = (types.ModuleType, types.FunctionType, type)
    return {k: v for k, v in namespace.items() if not k.startswith("_") and not isinstance(v, skip)}


def parse_value(text: str, default):
    """Parse a command-line value: a Python literal, or else the bare string (so --init_from=gpt2 works)."""
    if isinstance(default, bool) and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    # a string key keeps the text as typed (--wandb_run_name=2024 is a name), unless the user quoted it
    return text if isinstance(default, str) and not isinstance(value, str) else value


def check_value(key: str, value, default):
    """Return value converted to the default's type, or raise if it does not fit."""
    if default is None:
        return value
    if (type(default), type(value)) in ((int, float), (float, int)) and value % 1 == 0:  # 5e3 iterations; 1 as a float
        value = type(default)(value)
    if type(value) is not type(default):
        raise ValueError(f"config key {key!r} expects {type(default).__name__} (default {default!r}), got {value!r}")
    return value
