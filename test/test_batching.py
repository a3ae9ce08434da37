import pytest

from egnet_core.deploy.batching import batches_of_one_size, group_by_size


def test_a_stream_is_cut_into_batches_of_one_size_in_its_order():
    frames = ["a1", "a2", "a3", "b1", "a4"]
    assert list(batches_of_one_size(frames, 2, size=lambda f: f[0])) == [["a1", "a2"], ["a3"], ["b1"], ["a4"]]
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        list(batches_of_one_size(frames, 0, size=lambda f: f[0]))


def test_the_frames_of_several_cameras_are_one_batch_per_size_whatever_their_order():
    # front and rear at 1024×512, left at 640×480: two forward passes, not three.
    frames = [("front", (512, 1024)), ("left", (480, 640)), ("rear", (512, 1024))]
    assert group_by_size(frames, size=lambda f: f[1]) == [[frames[0], frames[2]], [frames[1]]]
    assert group_by_size([], size=lambda f: f[1]) == []
