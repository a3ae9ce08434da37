"""EGNet as in the paper's Figure 5: torchvision's ResNet streams, the Exposure Guidance Layer, checkpoints that carry
their config.
"""
