import numpy as np

from inspector import models
from inspector.models.compact import CompactSettings
from inspector.models.components.autoencoder import AutoencoderSettings


def build_model(architecture: str, settings, shape):
    return models.get(architecture).build(settings, shape)


def test_seed003_is_the_notebook_model():
    model = build_model("seed003", AutoencoderSettings(), (200, 200))
    kinds = [(type(layer).__name__, getattr(layer, "filters", None)) for layer in model.layers]
    assert kinds == [
        ("Conv2D", 32), ("MaxPooling2D", None), ("Conv2D", 16), ("MaxPooling2D", None), ("Conv2D", 8),
        ("Conv2DTranspose", 8), ("Conv2DTranspose", 16), ("Conv2DTranspose", 32), ("Conv2D", 1),
    ]
    assert [layer.kernel_size for layer in model.layers if type(layer).__name__ == "Conv2D"][:3] == [(4, 4)] * 3
    last = model.layers[-1]
    assert last.strides == (2, 2) and last.activation.__name__ == "sigmoid"
    assert model.loss == "mse" and type(model.optimizer).__name__ == "Adam"
    assert model.output_shape == (None, 200, 200, 1)


def test_compact_reconstructs_same_shape_and_is_smaller():
    compact = build_model("compact", CompactSettings(decoder_filters=(32, 16, 4)), (200, 200))
    assert compact.output_shape == (None, 200, 200, 1)
    transposed = [layer.filters for layer in compact.layers if type(layer).__name__ == "Conv2DTranspose"]
    assert transposed == [32, 16, 4]
    # No layer of the compact model runs wider than 4 channels at full resolution.
    full_resolution = [layer for layer in compact.layers[1:] if layer.output.shape[1] == 200]
    assert max(layer.output.shape[-1] for layer in full_resolution) <= 4
    out = compact(np.zeros((2, 200, 200, 1), np.float32)).numpy()
    assert out.shape == (2, 200, 200, 1) and 0 <= out.min() and out.max() <= 1


def test_no_lambda_layers_in_any_architecture():
    for name in ("seed003", "compact"):
        model = build_model(name, models.get(name).settings(), (200, 200))
        assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
