"""Shipped worlds: a preset's trained artefacts committed with the project, so that every machine
explains the same models.

Training is not bit-identical across CPUs: two machines that build the default world from its seed
can get different models, and then feature 17 of one is another latent than feature 17 of the
other. So the default world's trained stages (tower, VLMs with their processors, SAE, scorer, ground
truth, quality report) are committed under `shipped/<preset>@<version>/`, one directory per stage,
with `manifest.json` listing every file's size and sha256. A run on `default` reads them (after
checking the manifest) and renders only the image pools, which are procedural and regenerate
bit-identically from their seed: the manifest holds their content hash, which every build checks.

    world choice   what is read
    default        the latest shipped version (default@1)
    default@1      shipped version 1
    default@train  trained on this machine from the preset's seed
    default@seed3  trained on this machine from seed 3
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from benchmark.registry import UsageError
from benchmark.world.presets import WORLDS, WorldConfig

SHIPPED = Path(__file__).parent / "shipped"
MANIFEST = "manifest.json"
_verified: dict[Path, dict] = {}


@dataclass(frozen=True)
class WorldChoice:
    """A world as a run names it: the preset's config, the shipped version read (None: trained here),
    the name its rows carry and the spelling another process reopens it by."""

    config: WorldConfig
    version: int | None
    name: str
    spec: str


def versions(preset: str) -> list[int]:
    """Shipped versions of `preset`, oldest first."""
    return sorted(int(d.name.rsplit("@", 1)[1]) for d in SHIPPED.glob(f"{preset}@*") if (d / MANIFEST).is_file())


def choose(spec: str) -> WorldChoice:
    """`preset[@tag]` (see the module docstring) as a `WorldChoice`; a tag it cannot honour is a UsageError."""
    preset, _, tag = spec.partition("@")
    config = WORLDS.get(preset)
    shipped = versions(preset)
    if tag == "":
        return WorldChoice(config, shipped[-1], f"{config.name}@{shipped[-1]}", spec) if shipped else \
            WorldChoice(config, None, config.name, spec)
    if tag == "train":
        return WorldChoice(config, None, config.name, spec)
    if tag.startswith("seed") and tag[4:].isdigit():
        seed = int(tag[4:])
        return WorldChoice(replace(config, seed=seed), None, f"{config.name}@seed{seed}", spec)
    if tag.isdigit() and int(tag) in shipped:
        return WorldChoice(config, int(tag), f"{config.name}@{tag}", spec)
    have = ", ".join(f"{preset}@{v}" for v in shipped) or "none"
    raise UsageError(f"world {spec!r}: expected {preset}, {preset}@train, {preset}@seedN or a shipped version "
                     f"(shipped: {have})")


def shipped_dir(preset: str, version: int) -> Path:
    return SHIPPED / f"{preset}@{version}"


def file_sha256(fpath: Path) -> str:
    h = hashlib.sha256()
    with open(fpath, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(dpath: Path) -> dict:
    """The manifest of a shipped world, after checking every file it lists (whole-file sha256, about
    0.1 s for the default world's 38 MB); a missing or altered file is a UsageError saying how to
    restore it. Checked once per process."""
    if dpath not in _verified:
        manifest = json.loads((dpath / MANIFEST).read_text())
        for rel, entry in manifest["files"].items():
            fpath = dpath / rel
            if not fpath.is_file() or fpath.stat().st_size != entry["bytes"] or file_sha256(fpath) != entry["sha256"]:
                raise UsageError(f"{fpath}: missing or not the file {dpath.name}'s manifest lists; restore it "
                                 f"(git checkout -- {fpath}) or train the world here (--world {dpath.name.split('@')[0]}@train)")
        _verified[dpath] = manifest
    return _verified[dpath]


def manifest_key(dpath: Path) -> str:
    """A shipped world's identity in the keys of the stages built on it: its manifest's hash."""
    return f"{dpath.name}-{file_sha256(dpath / MANIFEST)[:12]}"


def write(dirs: dict[str, Path], pools: dict, stages: tuple[str, ...], dpath: Path) -> dict:
    """Copies trained `stages` (name -> cache directory in `dirs`) into a new shipped directory `dpath`
    and writes its manifest (each file's size and sha256, the pools' config and content hashes, the
    cache stages it was copied from)."""
    if dpath.exists():
        raise UsageError(f"{dpath} exists; a shipped version is never rewritten, ship the next one")
    tmp = dpath.with_name(f".{dpath.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in stages:
        shutil.copytree(dirs[name], tmp / name)
    files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {"world": dpath.name, "pools": pools, "stages": {name: dirs[name].name for name in stages},
                "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.rename(dpath)
    return manifest


def differences(dirs: dict[str, Path], shipped: Path) -> list[str]:
    """How trained stages differ from a shipped version's, one line per stage: identical files, or
    which differ and by how much their tensors do."""
    from safetensors.numpy import load_file

    manifest = verified(shipped)
    lines = []
    for name in manifest["stages"]:
        ours = {p.relative_to(dirs[name]).as_posix(): p for p in sorted(dirs[name].rglob("*"))
                if p.is_file() and p.name != "meta.json"}
        theirs = {rel.split("/", 1)[1]: e for rel, e in manifest["files"].items()
                  if rel.startswith(f"{name}/") and rel != f"{name}/meta.json"}
        changed = sorted(rel for rel in ours.keys() | theirs.keys()
                         if rel not in ours or rel not in theirs or file_sha256(ours[rel]) != theirs[rel]["sha256"])
        if not changed:
            lines.append(f"{name}: identical to {shipped.name}")
            continue
        gaps = []
        for rel in changed:
            if rel.endswith(".safetensors") and rel in ours and rel in theirs:
                a, b = load_file(ours[rel]), load_file(shipped / name / rel)
                gaps.append(max(float(abs(a[k].astype("float64") - b[k]).max()) for k in a if k in b))
        gap = f"; largest weight difference {max(gaps):.3g}" if gaps else ""
        lines.append(f"{name}: {', '.join(changed)} differ from {shipped.name}{gap}")
    return lines
