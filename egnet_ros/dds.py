"""The Fast DDS profile that lets best-effort camera-sized images cross processes (see fastdds_profile.xml).

Kept free of rclpy and torch imports so that the launch file can read the path cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

FASTDDS_PROFILE = Path(__file__).with_name("fastdds_profile.xml")
FASTDDS_PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def use_fastdds_profile() -> None:
    """Point Fast DDS at egnet's profile unless the user chose one; set to empty, no profile is loaded (the
    variable is removed, so Fast DDS runs on its defaults). Fast DDS reads it when the process's first
    participant is created, inside ``rclpy.init``, so call this before that."""
    value = os.environ.get(FASTDDS_PROFILE_ENV)
    if value is None:
        os.environ[FASTDDS_PROFILE_ENV] = str(FASTDDS_PROFILE)
    elif not value:
        del os.environ[FASTDDS_PROFILE_ENV]
