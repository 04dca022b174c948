"""nnU-Net v2 models as model packages: read a trained-model folder, rebuild its network,
export it, and reproduce nnU-Net's own inference (preprocessing, sliding window, mirroring,
fold ensemble, resampling back) with the networks run through screen's backends."""
