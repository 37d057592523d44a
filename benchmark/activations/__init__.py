"""Stage 2, activations: the streamed passes that encode a pool with the SAE (`passes`), what they keep on
disk (`stores`), the scorer's embeddings of the scoring pool (`embeddings`), patch grids between two
towers (`grids`) and a feature's top images as a method shows them (`top_images`)."""
