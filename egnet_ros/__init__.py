"""egnet_ros: the ROS 2 side of egnet; messages in and out of the shared predictor in ``egnet_core``."""
