"""Extraction tables: schema, validation and the Dataset."""

from .dataset import Dataset, bundled_data_dir, load_dataset, read_dataset

__all__ = ["Dataset", "bundled_data_dir", "load_dataset", "read_dataset"]
