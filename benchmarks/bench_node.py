"""The segmentation node's overhead: end-to-end latency through DDS and the node over the model's own time.

    python benchmarks/bench_node.py --out bench-out [--frames 10] [--output-stride 16] [--size 1024x512]

One run measures, on the same bgr8 frame: the conversions the node does per frame (message -> RGB, labels and
exposure -> messages), the model alone (``Segmenter.predict`` in this process), and the latency from publishing
the frame here to receiving its last output (``~/exposure``) from the ``egnet-segment`` process, one frame at
a time so that nothing is dropped. Writes OUT/node_bench.json and OUT/node_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from egnet_core.cli import parse_size
from egnet_core.deploy.inference import Segmenter
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.model.egnet import EGNet
from egnet_ros.dds import use_fastdds_profile
from egnet_ros.image_conversion import exposure_to_image, image_to_rgb, labels_to_image
from egnet_ros.node_process import start_segment_node

DOMAIN_ID = 77


def _median_ms(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e3


def _frame_message(width: int, height: int) -> Image:
    bgr = np.random.default_rng(0).integers(0, 60, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
    msg.data = bgr.tobytes()
    return msg


def _node_latencies_ms(msg: Image, frames: int) -> list[float]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("egnet_bench_camera", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: list[Image] = []
    node.create_subscription(Image, "/egnet_segment/exposure", received.append, 10)
    camera = node.create_publisher(Image, "image", qos_profile_sensor_data)
    while camera.get_subscription_count() == 0 or node.count_publishers("/egnet_segment/exposure") == 0:
        executor.spin_once(timeout_sec=0.1)
    latencies = []
    for index in range(frames + 1):  # the first frame warms the DDS path and is not counted
        msg.header.stamp.sec = index
        start = time.perf_counter()
        camera.publish(msg)
        while not received or received[-1].header.stamp.sec != index:
            executor.spin_once(timeout_sec=0.1)  # returns as soon as a message is in
        latencies.append((time.perf_counter() - start) * 1e3)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return latencies[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--size", type=parse_size, default=(1024, 512))
    args = parser.parse_args()
    use_fastdds_profile()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # this process and the node's
    width, height = args.size
    msg = _frame_message(width, height)
    model = EGNet(backbone="resnet18", output_stride=args.output_stride)
    segmenter = Segmenter(model)
    rgb = image_to_rgb(msg)
    result = segmenter.predict(rgb)  # warm-up

    conversion_in_ms = _median_ms(lambda: image_to_rgb(msg), 20)
    conversion_out_ms = _median_ms(lambda: (labels_to_image(result.labels, msg.header),
                                            exposure_to_image(result.exposure, msg.header)), 20)
    model_ms = _median_ms(lambda: segmenter.predict(rgb), args.frames)

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = save_checkpoint(Path(scratch) / "bench.pt", model)
        log = Path(scratch) / "node.log"
        process = start_segment_node(["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"], domain_id=DOMAIN_ID,
                                     log=log)
        try:
            latencies = _node_latencies_ms(msg, args.frames)
        finally:
            process.stop()
        summary = re.search(r"inference p50 ([\d.]+) ms", log.read_text())
    end_to_end_ms = statistics.median(latencies)
    result = {
        "model": f"EGNet-ResNet18 OS{args.output_stride}", "size": [width, height], "encoding": "bgr8",
        "frames": args.frames, "conversion_in_ms": conversion_in_ms, "conversion_out_ms": conversion_out_ms,
        "model_alone_ms": model_ms, "node_inference_p50_ms": float(summary.group(1)) if summary else None,
        "end_to_end_ms": end_to_end_ms, "end_to_end_runs_ms": latencies,
        "end_to_end_over_model": end_to_end_ms / model_ms,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "node_bench.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Node overhead, {result['model']}, {width}×{height} bgr8, CPU, median of {args.frames} frames",
        "", "| measure | ms | × model alone |", "|---|---:|---:|",
        f"| model alone (Segmenter.predict) | {model_ms:.1f} | 1.000 |",
        f"| publish → ~/exposure received, through DDS and the node | {end_to_end_ms:.1f} | "
        f"{end_to_end_ms / model_ms:.3f} |",
        f"| bgr8 message → RGB array | {conversion_in_ms:.2f} | {conversion_in_ms / model_ms:.4f} |",
        f"| labels + exposure → messages | {conversion_out_ms:.2f} | {conversion_out_ms / model_ms:.4f} |",
    ]
    if result["node_inference_p50_ms"] is not None:
        node_ms = result["node_inference_p50_ms"]
        lines.append(f"| the node's own inference (p50 from its summary) | {node_ms:.1f} | {node_ms / model_ms:.3f} |")
    (args.out / "node_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
