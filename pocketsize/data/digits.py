"""scikit-learn's bundled handwritten digits (8x8 images, 10 classes) as a DatasetDict.

A non-text classification set that needs no download: it shows that a task adapter, not the
data's modality, decides what a stage does. Columns: `pixel_values` (1 x 8 x 8 floats in
[0, 1]) and `label` (ClassLabel "0".."9"). Splits are stratified and seeded.
"""

from __future__ import annotations


def load_digits_dataset(validation: float = 0.15, test: float = 0.2, seed: int = 0):
    """A DatasetDict with train / validation / test of the 1,797 digits images."""
    import numpy as np
    from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8
    labels = digits.target.astype(np.int64)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=test, stratify=labels, random_state=seed
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=validation / (1 - test), stratify=rest_y, random_state=seed
    )
    features = Features(
        {
            "pixel_values": Array3D(shape=(1, 8, 8), dtype="float32"),
            "label": ClassLabel(names=[str(i) for i in range(10)]),
        }
    )

    def split(x, y):
        return Dataset.from_dict({"pixel_values": x, "label": y}, features=features)

    return DatasetDict(
        {
            "train": split(train_x, train_y),
            "validation": split(val_x, val_y),
            "test": split(test_x, test_y),
        }
    )
