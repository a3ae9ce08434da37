"""The network's forward captured as a CUDA graph per input shape and replayed: one launch per frame instead of
hundreds of kernel launches, which is most of EGNet's time at batch 1 on a fast GPU. For cameras, whose frames
all have one size; each new shape is captured once (warm-up on a side stream first, as PyTorch requires)."""

from __future__ import annotations

import torch
from torch import nn

from egnet_core.model.egnet import EGNetOutput

WARM_UP_RUNS = 3  # cuDNN picks its algorithms and the allocator settles before the capture


class CudaGraphNetwork:
    """Called like the network it wraps, on CUDA tensors; outputs are copies, safe to keep across calls."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.config = network.config
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, EGNetOutput]] = {}

    def __call__(self, images: torch.Tensor) -> EGNetOutput:
        key = (tuple(images.shape), images.dtype, images.is_contiguous(memory_format=torch.channels_last))
        # Capture and replay record on the current device's streams: make it the images' one (cuda:N).
        with torch.cuda.device(images.device):
            if key not in self._graphs:
                self._graphs[key] = self._capture(images)
            graph, static_input, static_output = self._graphs[key]
            static_input.copy_(images)
            graph.replay()
            return EGNetOutput(logits=static_output.logits.clone(), exposure=static_output.exposure.clone())

    def _capture(self, images: torch.Tensor):
        static_input = images.clone()
        side = torch.cuda.Stream(device=images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(side):
            for _ in range(WARM_UP_RUNS):
                self.network(static_input)
        torch.cuda.current_stream(images.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.network(static_input)
        return graph, static_input, static_output
