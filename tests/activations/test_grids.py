"""Per-patch values mapped from the scorer's grid onto the tower's by area: known answers on grids
that differ as real ones do (4 x 4 against 64 x 64, 16 x 16 against 24 x 24), with a CLS token in
front or not, and the identity when the grids agree."""
import pytest
import torch

from benchmark.activations.grids import grid_of, overlap, resample


def test_grid_of_reads_a_square_with_or_without_a_cls_token():
    assert grid_of(16) == (4, 0) and grid_of(4096) == (64, 0) and grid_of(577) == (24, 1) and grid_of(257) == (16, 1)
    with pytest.raises(ValueError, match="not a square"):
        grid_of(20)


def test_overlap_rows_are_shares_of_each_target_cell():
    torch.testing.assert_close(overlap(3, 2), torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))
    for target, source in ((24, 16), (16, 24), (64, 4), (4, 64)):
        torch.testing.assert_close(overlap(target, source).sum(1), torch.ones(target, dtype=torch.float64))


def test_a_coarse_grid_spreads_each_value_over_the_patches_it_covers():
    values = torch.arange(16.0)[None]  # a 4 x 4 scorer grid onto a 64 x 64 tower grid: 16 x 16 blocks
    out = resample(values, 64).reshape(64, 64)
    assert out.shape == (64, 64)
    for r in range(4):
        for c in range(4):
            assert (out[16 * r:16 * (r + 1), 16 * c:16 * (c + 1)] == 4 * r + c).all()
    with_cls = torch.cat([torch.tensor([[99.0]]), values], 1)  # a CLS token in front is dropped
    assert torch.equal(resample(with_cls, 64), resample(values, 64))


def test_a_fine_grid_is_averaged_into_the_patches_it_falls_in():
    values = torch.arange(4096.0).reshape(64, 64)
    out = resample(values.reshape(1, -1), 4).reshape(4, 4)
    torch.testing.assert_close(out, values.reshape(4, 16, 4, 16).mean((1, 3)))


def test_16_by_16_onto_24_by_24_is_area_weighted():
    values = torch.rand(2, 1 + 256, generator=torch.Generator().manual_seed(0))
    out = resample(values, 24).reshape(2, 24, 24)
    grid = values[:, 1:].reshape(2, 16, 16)
    # tower cell 1 spans [2/48, 4/48]: half in scorer cell 0 ([0, 3/48]), half in cell 1 ([3/48, 6/48])
    w = torch.tensor([0.5, 0.5])
    torch.testing.assert_close(out[:, 1, 1], torch.einsum("i,j,nij->n", w, w, grid[:, :2, :2]))
    torch.testing.assert_close(out[:, 0, 0], grid[:, 0, 0])  # wholly inside scorer cell (0, 0)
    torch.testing.assert_close(out[:, 2, 0], grid[:, 1, 0])  # [4/48, 6/48]: wholly inside scorer row 1
    torch.testing.assert_close(out.mean((1, 2)), grid.mean((1, 2)))  # area is conserved


def test_the_same_grid_is_the_identity_exactly():
    values = torch.rand(3, 576)
    assert torch.equal(resample(values, 24), values)
