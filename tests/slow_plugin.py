"""A plug-in method file for kill-and-resume tests: slow, and logging which process explained what."""
from __future__ import annotations

from pathlib import Path


def write_slow_plugin(dpath: Path, seconds: float) -> tuple[Path, Path]:
    """(plugin file, log): `explain` sleeps `seconds` per batch, then appends `<pid> <feature>` lines."""
    log, plugin = dpath / "computed.log", dpath / "slow.py"
    plugin.write_text(
        "import os, time\n"
        f"LOG = {str(log)!r}\n"
        "def explain(ctx, features):\n"
        f"    time.sleep({seconds})\n"
        "    with open(LOG, 'a') as fh:\n"
        "        fh.write(''.join(f'{os.getpid()} {f}\\n' for f in features))\n"
        "    return [f'feature {f}' for f in features]\n")
    return plugin, log


def logged(log: Path) -> list[tuple[int, int]]:
    """(pid, feature) per explained feature, in the order they were logged."""
    return [(int(pid), int(f)) for pid, f in (line.split() for line in log.read_text().splitlines())]
