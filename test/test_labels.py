import numpy as np
import pytest

from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE, colorize, label_id_to_train_id


def test_the_nineteen_cityscapes_training_classes_in_train_id_order():
    assert NUM_CLASSES == 19
    assert CLASS_NAMES[:3] == ("road", "sidewalk", "building")
    assert CLASS_NAMES[-1] == "bicycle"
    assert CLASS_NAMES.index("car") == 13
    assert PALETTE.shape == (19, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[0]) == (128, 64, 128)  # road
    assert tuple(PALETTE[13]) == (0, 0, 142)  # car


def test_label_ids_map_to_train_ids_and_everything_else_is_ignored():
    ids = np.array([[7, 8, 11, 26], [0, 1, 6, 33], [34, 100, 255, 24]], dtype=np.uint8)
    expected = np.array([[0, 1, 2, 13], [255, 255, 255, 18], [255, 255, 255, 11]], dtype=np.uint8)
    np.testing.assert_array_equal(label_id_to_train_id(ids), expected)
    all_ids = label_id_to_train_id(np.arange(256))
    assert set(np.unique(all_ids)) == set(range(19)) | {IGNORE_INDEX}
    assert np.count_nonzero(all_ids != IGNORE_INDEX) == 19


def test_label_ids_outside_a_byte_are_an_error():
    with pytest.raises(ValueError, match="from -1 to 300"):
        label_id_to_train_id(np.array([-1, 300]))


def test_colorize_uses_the_palette_and_blacks_out_ignore():
    colours = colorize(np.array([[0, 13, 255]], dtype=np.uint8))
    np.testing.assert_array_equal(colours[0], [PALETTE[0], PALETTE[13], [0, 0, 0]])
