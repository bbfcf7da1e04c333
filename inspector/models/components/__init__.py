"""Shared parts of the architectures, which are not architectures themselves.

Nothing here is registered in `ARCHITECTURES`; every architecture package may import these,
and no architecture package imports another.

- `running`: a Keras model run over arrays (`forward`) and its outputs post-processed into
  scores and error maps (`post_process`, `score_arrays`): the one post-processing, used by
  serving (`inference`) and by every `fit` to score good images for calibration.
- `autoencoder` (settings, cheap to import) and `autoencoder_fit` (the held-out split, the
  seeding, the Keras `fit` loop): what every autoencoder shares.
- `patch_memory` (settings, cheap to import), `patch_memory_layer` (the Keras layer, serving)
  and `patch_memory_fit` (filling a memory, per-pixel statistics): the patch memory, an
  architecture of its own and the denoising autoencoder's second opinion.
- `regions`: the part mask inside a graph, for the layers that keep their error to the part.

Settings modules import no TensorFlow and no OpenCV: the registry imports them to validate
pipelines.
"""
