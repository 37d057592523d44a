"""A run config file (TOML or YAML), read once into every table a run takes from it.

Top-level keys are the run command's options, spelled as its flags or with underscores; they are
turned back into flags (`RunFile.arguments`) so that argparse checks a file's values exactly as it
checks a command line's, and flags given after the file override it. The model tables ([vlm], [sae],
[scorer], [pool], [prompts], [generator], [segmenter]) name real models; [explainer], [scoring] and
[explaining] are the explainer's, the metrics' and the governed method settings' tables.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from benchmark.config.models import ALL_TABLES, ModelsConfig, models_config
from benchmark.registry import UsageError

SETTING_TABLES = ("explainer", "scoring", "explaining")


@dataclass(frozen=True)
class RunFile:
    """What one run config file holds, parsed once."""

    path: Path
    options: dict
    """Top-level keys that are run options (names with underscores), in the file's order."""
    models: ModelsConfig | None
    """The real models its tables name (paths relative to the file's folder), or None: the world."""
    tables: dict
    """[explainer], [scoring] and [explaining], where given."""

    def arguments(self, flags: dict[str, tuple[str, bool]]) -> list[str]:
        """The options as command-line arguments; `flags`: each option's dest -> (its flag, whether it
        is given once per item). An unknown option or a value no flag takes is a one-line UsageError."""
        out: list[str] = []
        for dest, value in self.options.items():
            if dest not in flags:
                close = difflib.get_close_matches(dest, [*flags, *ALL_TABLES], n=1)
                raise UsageError(f"--config {self.path}: unknown option {dest!r}; "
                                 + (f"did you mean {close[0]!r}? " if close else "")
                                 + f"options: {', '.join(sorted(flags))}; tables: {', '.join(ALL_TABLES)}")
            flag, per_item = flags[dest]
            if dest == "explanations" and isinstance(value, str) and (self.path.parent / value).is_file():
                value = str(self.path.parent / value)  # a file named in a config is read from the config's folder
            if isinstance(value, list) and per_item:
                out += [part for item in value for part in (flag, str(item))]
                continue
            if isinstance(value, list):
                value = ",".join(map(str, value))
            if isinstance(value, (bool, dict)) or value is None:
                raise UsageError(f"--config {self.path}: {dest} = {value!r} is not a value for {flag}")
            out += [flag, str(value)]
        return out


def read_table_file(fpath: str | Path) -> dict:
    """A TOML or YAML file's top-level table, its keys with underscores; an unreadable file is a
    one-line UsageError."""
    path = Path(fpath)
    if not path.is_file():
        raise UsageError(f"--config {fpath}: no such file")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise UsageError(f"--config {fpath}: expected a .toml, .yaml or .yml file")
    try:
        if path.suffix == ".toml":
            import tomllib

            config = tomllib.loads(path.read_text())
        else:
            import yaml

            config = yaml.safe_load(path.read_text())
    except (ValueError, ImportError) as e:  # tomllib.TOMLDecodeError and yaml.YAMLError
        raise UsageError(f"--config {fpath}: {' '.join(str(e).split())}") from None
    except Exception as e:
        if type(e).__module__.startswith("yaml"):
            raise UsageError(f"--config {fpath}: {' '.join(str(e).split())}") from None
        raise
    if not isinstance(config, dict):
        raise UsageError(f"--config {fpath}: expected a table of run options at the top level")
    return {str(k).replace("-", "_"): v for k, v in config.items()}


def read_run_file(fpath: str | Path) -> RunFile:
    """The run config at `fpath`, parsed once. A top-level `sae = "random:0"` is the `--sae` option;
    an [sae] table names an SAE."""
    path = Path(fpath)
    keys = read_table_file(path)
    is_table = {k: (k in ALL_TABLES and not (k == "sae" and isinstance(v, str))) for k, v in keys.items()}
    models = {k: v for k, v in keys.items() if is_table[k]}
    spec = models_config(models, f"--config {fpath}").relative_to(path.parent) if models else None
    return RunFile(path, {k: v for k, v in keys.items() if not is_table[k] and k not in SETTING_TABLES}, spec,
                   {k: keys[k] for k in SETTING_TABLES if k in keys})
