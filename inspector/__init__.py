"""inspector: visual inspection of parts with a convolutional autoencoder trained on good parts."""

__version__ = "0.1.0"
