"""What one streamed pass over an image pool keeps of the SAE's activations, on disk, in sizes that do
not grow with the pool beyond what the result needs.

- `TopImages` (the top-k pool): per latent, its best `K` images by the ranking statistic (the mean
  over patches by default, or the max) and their per-patch activations. The pass keeps a running
  top-K, so memory is F x K x P floats whatever the pool's size; ties go to the earlier image.
- `ScoringActivations` (the held-out scoring pool, which metrics read): every non-zero activation,
  exactly, grouped by latent in two `LatentIndex`es: per (image, patch) and per image (the mean over
  patches), so a metric reads one feature batch's rows and never a dense pool; and each latent's
  `SCALE_TOP` largest token activations (its scale, the unit of steering coefficients).

Shape letters: the key in `benchmark`'s package docstring.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Codes:
    """A batch's SAE activations, exactly: every non-zero as (image, patch, latent, value), in token
    order (image, then patch), latents ascending within a token."""

    image_E: torch.Tensor
    patch_E: torch.Tensor
    latent_E: torch.Tensor
    value_E: torch.Tensor
    images: int
    patches: int
    d_sae: int
    near_ties_F: torch.Tensor | None = None
    """Per latent, the batch's tokens whose firing rests on a near-tie (`SAE.near_ties`); None: not counted."""


RANKS = ("mean", "max")
"""Ranking statistics of an image for a latent: its activation averaged over the image's patches
(the seed paper's), or its largest on one patch."""
TOP_KEPT = 10
"""Top images a pass keeps per latent unless more are asked for (the seed paper samples 5 of its top 10)."""
SCALE_TOP = 16
"""A latent's scale is the mean of its this many largest token activations over the scoring pool."""
CHUNK_ENTRIES = 2 ** 22
"""Sparse entries a `LatentIndex` buffers in memory before it writes them out as one sorted chunk:
at most about 40 bytes each while a chunk is sorted (160 MB), whatever the pool. Larger chunks only
move the pass's peak up with the pool until they fill (2 ** 24 filled at 820 images of 4,096 tokens,
k = 25, and held 0.9 GB at the flush); the merge reads one chunk at a time."""


def image_statistic(codes: Codes, rank: str = "mean") -> torch.Tensor:
    """(n, F) each latent's mean (sum over patches in patch order, over P) or max per image."""
    out = torch.zeros(codes.images * codes.d_sae)
    index = codes.image_E * codes.d_sae + codes.latent_E
    if rank == "mean":
        out.index_add_(0, index, codes.value_E)
        return (out / codes.patches).reshape(codes.images, codes.d_sae)
    return out.scatter_reduce_(0, index, codes.value_E, "amax").reshape(codes.images, codes.d_sae)


class TopImagesPass:
    """The running top-K images per latent over consecutive batches of one pool."""

    def __init__(self, d_sae: int, patches: int, keep: int, rank: str = "mean"):
        self.rank, self.patches = rank, patches
        self.score_FK = torch.full((d_sae, keep), -torch.inf)
        self.image_FK = torch.full((d_sae, keep), -1, dtype=torch.long)
        self.acts_FKP = torch.zeros(d_sae, keep, patches)
        self.near_ties_F = torch.zeros(d_sae, dtype=torch.long)

    def add(self, start: int, codes: Codes) -> None:
        """Folds in the codes of pool images start .. start + codes.images - 1."""
        self.near_ties_F += _near_ties(codes)
        f_count, keep = self.score_FK.shape
        stat_BF = image_statistic(codes, self.rank)
        images_B = torch.arange(start, start + codes.images)
        score = torch.cat([self.score_FK, stat_BF.T], 1)
        image = torch.cat([self.image_FK, images_B.expand(f_count, -1)], 1)
        by_image = image.argsort(dim=1, stable=True)  # rank by score, ties to the earlier image
        by_score = score.gather(1, by_image).argsort(dim=1, descending=True, stable=True)
        chosen = torch.zeros_like(score, dtype=torch.bool).scatter_(1, by_image.gather(1, by_score[:, :keep]), True)
        free_f, free_k = (~chosen[:, :keep]).nonzero(as_tuple=True)  # slots whose image drops out ...
        new_f, new_b = chosen[:, keep:].nonzero(as_tuple=True)  # ... taken by new images, latent by latent
        self.score_FK[free_f, free_k] = stat_BF[new_b, new_f]
        self.image_FK[free_f, free_k] = images_B[new_b]
        self.acts_FKP[free_f, free_k] = 0
        slot_BF = torch.full((codes.images, f_count), -1, dtype=torch.long)
        slot_BF[new_b, new_f] = free_k
        slot_E = slot_BF[codes.image_E, codes.latent_E]
        hit = slot_E >= 0
        self.acts_FKP[codes.latent_E[hit], slot_E[hit], codes.patch_E[hit]] = codes.value_E[hit]

    def save(self, dpath: Path) -> None:
        """Each latent's kept images best first (ties: earlier image first); empty slots (a pool of
        fewer than K images) last, as image -1."""
        by_image = torch.where(self.image_FK < 0, torch.iinfo(torch.long).max, self.image_FK).argsort(dim=1, stable=True)
        order = by_image.gather(1, self.score_FK.gather(1, by_image).argsort(dim=1, descending=True, stable=True))
        np.save(dpath / "top_image_FK.npy", self.image_FK.gather(1, order).numpy())
        np.save(dpath / "top_score_FK.npy", self.score_FK.gather(1, order).numpy())
        np.save(dpath / "near_ties_F.npy", self.near_ties_F.numpy())
        f_count, keep = order.shape
        writer = LatentIndexWriter(dpath / "top_acts", f_count, keep * self.patches)
        for start in range(0, f_count, 256):  # a block of latents at a time: no second F x K x P copy
            block = order[start:start + 256, :, None].expand(-1, -1, self.patches)
            acts_BX = self.acts_FKP[start:start + 256].gather(1, block).reshape(len(block), -1)
            latent_E, row_E = acts_BX.nonzero(as_tuple=True)
            writer.add(start + latent_E, row_E, acts_BX[latent_E, row_E])
        writer.close()
        (dpath / "top.json").write_text(json.dumps({"rank": self.rank, "patches": self.patches}))


class TopImages:
    """A pool's top images per latent, as `TopImagesPass` saved them (memory-mapped)."""

    def __init__(self, dpath: Path):
        meta = json.loads((dpath / "top.json").read_text())
        self.rank, self.patches = meta["rank"], meta["patches"]
        self.image_FK = torch.from_numpy(np.load(dpath / "top_image_FK.npy"))
        self.score_FK = torch.from_numpy(np.load(dpath / "top_score_FK.npy"))
        self.near_ties_F = np.load(dpath / "near_ties_F.npy")
        """Per latent, the pool's tokens whose firing rests on a near-tie (`Codes.near_ties_F`)."""
        self.acts = LatentIndex(dpath / "top_acts")
        self.d_sae, self.keep = self.image_FK.shape

    @property
    def alive_F(self) -> np.ndarray:
        """Latents that fire on at least one image of the top-k pool: the seed paper's alive latents."""
        return (self.score_FK[:, 0] > 0).numpy()

    def ids(self, features: list[int], k: int) -> torch.Tensor:
        """(B, k) each feature's k best images, best first."""
        self._check(k)
        return self.image_FK[features, :k]

    def acts_BKP(self, features: list[int], k: int) -> torch.Tensor:
        """(B, k, P) each feature's activations on the patches of its k best images."""
        self._check(k)
        dense_BX = self.acts.dense(features, self.keep * self.patches)
        return dense_BX.reshape(len(features), self.keep, self.patches)[:, :k]

    def _check(self, k: int) -> None:
        if k > self.keep:
            raise ValueError(f"{k} top images asked for; the pass kept {self.keep}")


class LatentIndex:
    """Sparse (row, value) entries grouped by latent on disk: `offsets.npy` (F + 1), `rows.npy` and
    `values.npy` (E), rows ascending within a latent. Read memory-mapped, a latent at a time."""

    def __init__(self, dpath: Path):
        self.offsets = np.load(dpath / "offsets.npy")
        self.rows = np.load(dpath / "rows.npy", mmap_mode="r")
        self.values = np.load(dpath / "values.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def entries(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """Latent f's (rows, values), rows ascending."""
        a, b = self.offsets[f], self.offsets[f + 1]
        return np.asarray(self.rows[a:b]), np.asarray(self.values[a:b])

    def dense(self, features: list[int], rows: int) -> torch.Tensor:
        """(B, rows): each feature's values, zero where it has no entry."""
        out = np.zeros((len(features), rows), np.float32)
        for i, f in enumerate(features):
            r, v = self.entries(f)
            out[i, r] = v
        return torch.from_numpy(out)


class LatentIndexWriter:
    """Builds a `LatentIndex` from entries that arrive in row order, in bounded memory: entries are
    buffered, written as chunks sorted by latent, and the chunks merged latent by latent at the end."""

    def __init__(self, dpath: Path, d_sae: int, n_rows: int, chunk: int = CHUNK_ENTRIES):
        """`n_rows`: how many rows there can be (rows are stored as int32 below 2**31)."""
        self.dpath, self.d_sae, self.chunk = dpath, d_sae, chunk
        self.row_dtype = np.int32 if n_rows < 2 ** 31 else np.int64
        dpath.mkdir(parents=True, exist_ok=True)
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.buffered, self.chunks = 0, []

    def add(self, latent_E: torch.Tensor, row_E: torch.Tensor, value_E: torch.Tensor) -> None:
        self.buffer.append((latent_E.to(torch.int32), row_E.to(torch.int64), value_E.to(torch.float32)))
        self.buffered += len(latent_E)
        if self.buffered >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self.buffered:
            return
        latent, row, value = (torch.cat(parts) for parts in zip(*self.buffer))
        self.buffer, self.buffered = [], 0  # the parts go before the sort: one copy of the chunk at a time
        order = latent.argsort(stable=True).numpy()  # rows stay ascending within each latent
        i = len(self.chunks)
        np.save(self.dpath / f"chunk{i}.rows.npy", row.numpy().astype(self.row_dtype)[order])
        del row  # narrowed before it is gathered: no second int64 copy
        np.save(self.dpath / f"chunk{i}.values.npy", value.numpy()[order])
        self.chunks.append(torch.bincount(latent, minlength=self.d_sae).numpy())

    def close(self) -> None:
        self._flush()
        counts_CF = np.stack(self.chunks) if self.chunks else np.zeros((0, self.d_sae), np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts_CF.sum(0))]).astype(np.int64)
        np.save(self.dpath / "offsets.npy", offsets)
        if len(self.chunks) <= 1:  # already in its final order
            if not self.chunks:
                np.save(self.dpath / "rows.npy", np.zeros(0, self.row_dtype))
                np.save(self.dpath / "values.npy", np.zeros(0, np.float32))
                return
            (self.dpath / "chunk0.rows.npy").rename(self.dpath / "rows.npy")
            (self.dpath / "chunk0.values.npy").rename(self.dpath / "values.npy")
            return
        total = int(offsets[-1])
        rows = np.lib.format.open_memmap(self.dpath / "rows.npy", "w+", self.row_dtype, (total,))
        values = np.lib.format.open_memmap(self.dpath / "values.npy", "w+", np.float32, (total,))
        before_F = offsets[:-1].copy()  # where the next chunk's entries of each latent go
        for i, counts_F in enumerate(self.chunks):
            starts_F = np.concatenate([[0], np.cumsum(counts_F)[:-1]])
            dest_E = np.repeat(before_F - starts_F, counts_F) + np.arange(counts_F.sum())
            rows[dest_E] = np.load(self.dpath / f"chunk{i}.rows.npy")
            values[dest_E] = np.load(self.dpath / f"chunk{i}.values.npy")
            before_F += counts_F
            for part in ("rows", "values"):
                (self.dpath / f"chunk{i}.{part}.npy").unlink()
        rows.flush(), values.flush()


class ScoringPass:
    """Keeps every non-zero activation of a pool (by latent), its per-image means, and each
    latent's largest token activations."""

    def __init__(self, dpath: Path, d_sae: int, patches: int, n_images: int):
        self.dpath, self.d_sae, self.patches = dpath, d_sae, patches
        self.patch_index = LatentIndexWriter(dpath / "patches", d_sae, n_images * patches)
        self.mean_index = LatentIndexWriter(dpath / "means", d_sae, n_images)
        self.top_FS = torch.zeros(d_sae, SCALE_TOP)
        self.near_ties_F = torch.zeros(d_sae, dtype=torch.long)
        self.images = 0

    def add(self, start: int, codes: Codes) -> None:
        self.near_ties_F += _near_ties(codes)
        self.patch_index.add(codes.latent_E, (start + codes.image_E) * self.patches + codes.patch_E, codes.value_E)
        mean_BF = image_statistic(codes, "mean")
        image_E, latent_E = mean_BF.nonzero(as_tuple=True)
        self.mean_index.add(latent_E, start + image_E, mean_BF[image_E, latent_E])
        self.top_FS = largest_per_latent(torch.cat([self.top_FS, _largest(codes, SCALE_TOP)], 1), SCALE_TOP)
        self.images = max(self.images, start + codes.images)

    def save(self) -> None:
        self.patch_index.close(), self.mean_index.close()
        np.save(self.dpath / "scales.npy", (self.top_FS.clamp(min=0).sum(1) / SCALE_TOP).numpy())
        np.save(self.dpath / "near_ties_F.npy", self.near_ties_F.numpy())
        (self.dpath / "scoring.json").write_text(json.dumps({"images": self.images, "patches": self.patches}))


def _near_ties(codes: Codes) -> torch.Tensor:
    """(F,) the batch's near-tie counts; zeros for codes that were not counted (made by hand)."""
    return torch.zeros(codes.d_sae, dtype=torch.long) if codes.near_ties_F is None else codes.near_ties_F.long()


def largest_per_latent(values_FX: torch.Tensor, k: int) -> torch.Tensor:
    """(F, k) each row's k largest values, largest first."""
    return values_FX.sort(dim=1, descending=True).values[:, :k]


def _largest(codes: Codes, k: int) -> torch.Tensor:
    """(F, k) each latent's k largest token activations in a batch, zero-padded."""
    order = codes.value_E.argsort(descending=True, stable=True)
    latent, value = codes.latent_E[order], codes.value_E[order]
    by_latent = latent.argsort(stable=True)
    latent, value = latent[by_latent], value[by_latent]
    all_F = torch.arange(codes.d_sae)
    start_F, end_F = torch.searchsorted(latent, all_F), torch.searchsorted(latent, all_F, right=True)
    if len(value) == 0:
        return torch.zeros(codes.d_sae, k)
    index_FK = start_F[:, None] + torch.arange(k)
    return torch.where(index_FK < end_F[:, None], value[index_FK.clamp(max=len(value) - 1)], 0.0)


class ScoringActivations:
    """A pool's activations as `ScoringPass` saved them: read per feature batch, memory-mapped."""

    def __init__(self, dpath: Path):
        meta = json.loads((dpath / "scoring.json").read_text())
        self.n_images, self.patches = meta["images"], meta["patches"]
        self.patch_index, self.mean_index = LatentIndex(dpath / "patches"), LatentIndex(dpath / "means")
        self.scales_F = np.load(dpath / "scales.npy")
        self.near_ties_F = np.load(dpath / "near_ties_F.npy")
        """Per latent, the pool's tokens whose firing rests on a near-tie (`Codes.near_ties_F`)."""
        self.d_sae = len(self.mean_index)

    @property
    def firing_F(self) -> np.ndarray:
        """Latents that fire on at least one scoring-pool image (`TopImages.alive_F`: on the top-k pool)."""
        return np.diff(self.mean_index.offsets) > 0

    def image_means(self, features: list[int]) -> torch.Tensor:
        """(N, B) each feature's activation averaged over each image's patches."""
        return self.mean_index.dense(features, self.n_images).T

    def means_of(self, images_I: np.ndarray) -> torch.Tensor:
        """(I, F) every latent's mean activation on images `images_I` (one read of the whole index)."""
        position = np.full(self.n_images, -1)
        position[images_I] = np.arange(len(images_I))
        out = torch.zeros(len(images_I), self.d_sae)
        offsets = self.mean_index.offsets
        for start in range(0, len(offsets) - 1, 1024):  # a block of latents at a time
            stop = min(start + 1024, len(offsets) - 1)
            rows = np.asarray(self.mean_index.rows[offsets[start]:offsets[stop]])
            values = np.asarray(self.mean_index.values[offsets[start]:offsets[stop]])
            latents = np.repeat(np.arange(start, stop), np.diff(offsets[start:stop + 1]))
            hit = position[rows] >= 0
            out[position[rows[hit]], latents[hit]] = torch.from_numpy(values[hit])
        return out

    def patch_acts(self, f: int, images_I: np.ndarray) -> torch.Tensor:
        """(I, P) latent f's activation on each patch of images `images_I`."""
        rows, values = self.patch_index.entries(f)
        image, patch = rows // self.patches, rows % self.patches
        position = np.full(self.n_images, -1)
        position[images_I] = np.arange(len(images_I))
        hit = position[image] >= 0
        out = np.zeros((len(images_I), self.patches), np.float32)
        out[position[image[hit]], patch[hit]] = values[hit]
        return torch.from_numpy(out)

    def dense_NPF(self) -> torch.Tensor:
        """(N, P, F) every activation, dense: for small pools only (the world's ground truth)."""
        out = torch.zeros(self.n_images * self.patches, self.d_sae)
        offsets = self.patch_index.offsets
        latents = np.repeat(np.arange(self.d_sae), np.diff(offsets))
        out[torch.from_numpy(np.array(self.patch_index.rows, np.int64)), torch.from_numpy(latents)] = \
            torch.from_numpy(np.array(self.patch_index.values))
        return out.reshape(self.n_images, self.patches, self.d_sae)
