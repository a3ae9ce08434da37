"""egnet_core: the Exposure-Guided Network (Tan et al., "Night-time Scene Parsing with a Large Real Dataset",
IEEE TIP 2021).

Data flows one way through the package: ``labels`` and ``exposure`` describe the data, ``model`` (built from
``backbone`` and ``guidance``) maps images to logits and exposure maps, ``losses`` and ``metrics`` score them,
``checkpoint`` and ``inference`` carry trained models to the command line and the ROS node.
"""

__version__ = "0.1.0"
