"""Readers for the Keras file formats squeezefmt packs (h5py/zipfile only, nothing executed)."""
