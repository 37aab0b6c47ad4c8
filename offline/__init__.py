"""Offline work the running server never imports (``encore serve`` must not reach this package)."""
