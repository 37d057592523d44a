"""featurebench: automated explanations of vision-model SAE features, made and scored.

The flow, a folder per stage: `sources` (what a run explains) -> `activations` (streamed passes and
stores) -> `explaining` (methods, through `steering`'s engine) -> `scoring` (metrics) -> `results`
(rows, leaderboards); `config` holds every setting, `commands` the command line, `bench` the
harness's own benchmarks.

Shape letters, the one key every tensor name's suffix follows (`acts_BKP`: features, top images,
patches):

    B  features of a batch (a generate call's rows, one per feature); b a slice of them
    n  rows once each shown image is a row of its own
    N  images: of a pool, or per row where a row shows several
    I  images asked for (pool indices)
    K  top images          M  control images        R  records (simulation)
    F  latents (SAE features)                       E  sparse entries (a store's nonzeros)
    P  patches (tower tokens that are patches)      T  tower tokens
    D  width: the tower's hidden state, or the scorer's embedding where the name says so
    H, W, C  pixels: height, width, channels
"""
