import pytest

from egnet_ros.cameras import CameraTopics, camera_topics


def test_without_cameras_the_node_has_one_camera_on_its_image_topic_with_camera_info_beside_it():
    assert camera_topics([], image_topic="image", compressed=False) == [
        CameraTopics(name="image", image="image", camera_info="camera_info", outputs="~")]
    (single,) = camera_topics([], image_topic="/sensing/front/image_raw", compressed=True)
    assert (single.image, single.camera_info) == ("/sensing/front/image_raw", "/sensing/front/camera_info")


def test_each_named_camera_reads_its_own_relative_topics_and_publishes_under_its_name():
    front, rear = camera_topics(["front", "rear/left"], image_topic="image", compressed=False)
    assert front == CameraTopics(name="front", image="front/image", camera_info="front/camera_info",
                                 outputs="~/front")
    assert (rear.image, rear.outputs) == ("rear/left/image", "~/rear/left")
    (front,) = camera_topics(["front"], image_topic="image", compressed=True)
    assert front.image == "front/image/compressed"  # image_transport's name for the compressed stream


@pytest.mark.parametrize("cameras, message", [
    (["front", "front"], r"camera name\(s\) \['front'\] given more than once in \['front', 'front'\]"),
    (["front", ""], "camera name '' cannot be part of a topic name"),
    (["2nd"], "camera name '2nd' cannot be part of a topic name"),
    (["/front"], "camera name '/front' cannot be part of a topic name"),
    (["front cam"], "camera name 'front cam' cannot be part of a topic name"),
])
def test_camera_names_that_cannot_be_topic_names_are_refused_by_name(cameras, message):
    with pytest.raises(ValueError, match=message):
        camera_topics(cameras, image_topic="image", compressed=False)
