"""Extraction tables: schema, validation and the Dataset."""

from .dataset import Dataset, as_dataset, bundled_data_dir, load_dataset, read_dataset

__all__ = ["Dataset", "as_dataset", "bundled_data_dir", "load_dataset", "read_dataset"]
