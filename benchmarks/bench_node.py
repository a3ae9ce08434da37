"""The segmentation node: its overhead over the model, and several cameras in one node against one node each.

    python benchmarks/bench_node.py --out bench-out [--frames 10] [--output-stride 16] [--size 1024x512]
    python benchmarks/bench_node.py --out bench-out --cameras 1,2,4 [--seconds 20] [--rate 10] [--streams 1]
        [--rounds 1]

Overhead (the default) measures, on the same bgr8 frame: the conversions the node does per frame (message ->
RGB, labels and exposure -> messages), the model alone (``Segmenter.predict`` in this process), and the latency
from publishing the frame here to receiving its last output (``~/exposure``) from the ``egnet-segment`` process,
one frame at a time so that nothing is dropped. Writes OUT/node_bench.json and OUT/node_bench.md.

``--cameras`` compares, for each camera count N, one node with N ``cameras`` against N single-camera nodes
started side by side, in the same run: frames published here at ``--rate`` Hz per camera for ``--seconds``;
per-camera processed frames/s and end-to-end latency p50/p90 (publish -> labels received here), and the total
resident memory of the node processes. Writes OUT/node_cameras_bench.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from egnet_core.cli import parse_size
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.timing import timed
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.model.egnet import EGNet
from egnet_ros.dds import use_fastdds_profile
from egnet_ros.image_conversion import exposure_to_image, image_to_rgb, labels_to_image
from egnet_ros.node_process import NodeProcess, start_segment_node

DOMAIN_ID = 77


def _median_ms(function, repeats: int) -> float:
    return statistics.median(timed(function, repeats)) * 1e3


def _once(function) -> float:
    return timed(function, 1)[0]


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


def _drive(msg: Image, cameras: list[str], labels_topics: list[str], *, seconds: float, rate: float) -> dict:
    """Publish ``msg`` on ``/CAMERA/image`` for every camera at ``rate`` Hz for ``seconds``; per camera the frames
    sent, the labels received and their latencies (ms, publish -> labels here, matched by stamp)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("egnet_bench_cameras", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    sent_at: dict[tuple[str, int], float] = {}
    latencies: dict[str, list[float]] = {camera: [] for camera in cameras}

    def on_labels(camera: str):
        def record(labels: Image) -> None:
            published = sent_at.get((camera, labels.header.stamp.nanosec))
            if published is not None:
                latencies[camera].append((time.perf_counter() - published) * 1e3)
        return record

    publishers = [node.create_publisher(Image, f"/{camera}/image", qos_profile_sensor_data) for camera in cameras]
    for camera, topic in zip(cameras, labels_topics):
        node.create_subscription(Image, topic, on_labels(camera), 50)
    while not all(p.get_subscription_count() for p in publishers) or not all(
            node.count_publishers(topic) for topic in labels_topics):
        executor.spin_once(timeout_sec=0.1)
    executor.spin_once(timeout_sec=1.0)
    start, index = time.perf_counter(), 0
    while (due := start + index / rate) < start + seconds:
        while time.perf_counter() < due:
            executor.spin_once(timeout_sec=max(0.0, due - time.perf_counter()))
        msg.header.stamp.nanosec = index
        for camera, publisher in zip(cameras, publishers):
            sent_at[(camera, index)] = time.perf_counter()
            publisher.publish(msg)
        index += 1
    settle = time.perf_counter() + 5.0  # the batch in flight
    while time.perf_counter() < settle:
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return {camera: {"sent": index, "processed": len(latencies[camera]), "latencies_ms": latencies[camera]}
            for camera in cameras}


def _camera_setup(msg: Image, checkpoint: Path, count: int, *, shared: bool, scratch: Path, seconds: float,
                  rate: float, streams: int = 0) -> dict:
    """``shared``: one node with ``count`` cameras and ``streams`` inference streams (0: the node's auto);
    otherwise ``count`` single-camera nodes."""
    cameras = [f"cam{index}" for index in range(count)]
    common = ["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "precision:=fp32"]
    processes: list[NodeProcess] = []
    try:
        if shared:
            processes.append(start_segment_node(
                [*common, "-p", f"cameras:=[{', '.join(cameras)}]", "-p", f"inference_streams:={streams}"],
                domain_id=DOMAIN_ID, log=scratch / f"shared{count}_{streams}.log"))
            labels_topics = [f"/egnet_segment/{camera}/labels" for camera in cameras]
        else:
            for camera in cameras:  # started side by side: their start-ups overlap as on a car
                processes.append(NodeProcess.script(
                    "egnet-segment", ["--ros-args", *common, "-r", f"__node:=egnet_segment_{camera}",
                                      "-r", f"image:=/{camera}/image"],
                    domain_id=DOMAIN_ID, log=scratch / f"single{count}_{camera}.log"))
            for camera, process in zip(cameras, processes):
                process.wait_until_ready(DOMAIN_ID, f"/egnet_segment_{camera}", timeout=300)
            labels_topics = [f"/egnet_segment_{camera}/labels" for camera in cameras]
        per_camera = _drive(msg, cameras, labels_topics, seconds=seconds, rate=rate)
        memory_mib = sum(process.resident_mib() for process in processes)
    finally:
        for process in processes:
            process.stop()
    all_latencies = [ms for camera in per_camera.values() for ms in camera["latencies_ms"]]
    p50, p90 = np.percentile(all_latencies, [50, 90]) if all_latencies else (float("nan"), float("nan"))
    processed_per_s = [camera["processed"] / seconds for camera in per_camera.values()]
    setup = (f"one node, {streams} stream(s)" if streams else "one node (default)") if shared else f"{count} node(s)"
    return {"cameras": count, "setup": setup, "processes": len(processes),
            "per_camera_fps": processed_per_s, "total_fps": sum(processed_per_s),
            "latency_p50_ms": float(p50), "latency_p90_ms": float(p90), "resident_mib": memory_mib,
            "sent_per_camera": per_camera[cameras[0]]["sent"]}


def _batching_gain(model: EGNet, rgb: np.ndarray, counts: list[int], repeats: int = 2) -> dict[int, dict]:
    """The mechanisms on their own, in this process: one batch of N frames, and two threads each running a batch
    of half of them at once (the node's two inference streams), against N batches of one; interleaved so that
    the machine's other load falls on all alike; medians of ``repeats``."""
    segmenter = Segmenter(model, precision="fp32")
    segmenter.predict_batch([rgb] * max(counts))  # warm-up at the largest batch
    gains = {}
    with ThreadPoolExecutor(2) as pool:
        for count in counts:
            batched, streams, separate = [], [], []
            halves = [[rgb] * (count - count // 2), [rgb] * (count // 2)]
            for _ in range(repeats):
                batched.append(_once(lambda: segmenter.predict_batch([rgb] * count)))
                streams.append(_once(lambda: [f.result() for f in [
                    pool.submit(segmenter.predict_batch, half) for half in halves if half]]))
                separate.append(_once(lambda: [segmenter.predict(rgb) for _ in range(count)]))
            one, two, apart = (statistics.median(s) for s in (batched, streams, separate))
            gains[count] = {"one_batch_s": one, "two_streams_s": two, "separate_s": apart,
                            "speed_up": apart / one, "two_streams_speed_up": apart / two}
    return gains


def cameras_main(args, msg: Image, model: EGNet) -> None:
    gains = _batching_gain(model, image_to_rgb(msg), args.cameras)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = save_checkpoint(Path(scratch) / "bench.pt", model)
        for count in args.cameras:
            extra = [(True, streams) for streams in args.streams if streams <= count]
            setups = [(True, 0), *extra, (False, 0)] if count > 1 else [(True, 0)]
            for round_ in range(args.rounds):  # the setups in turn, so that the machine's drift falls on all
                for shared, streams in setups:
                    row = _camera_setup(msg, checkpoint, count, shared=shared, scratch=Path(scratch),
                                        seconds=args.seconds, rate=args.rate, streams=streams) | {"round": round_}
                    rows.append(row)
                    print(json.dumps({key: value for key, value in row.items() if key != "per_camera_fps"}))
    floors = {}
    for count in args.cameras:
        ratios = []  # per round: the default one node against the N nodes run right after it
        for round_ in range(args.rounds):
            same = [r for r in rows if r["cameras"] == count and r["round"] == round_]
            shared = next(r for r in same if r["setup"] == "one node (default)")
            separate = next((r for r in same if r["processes"] > 1), None)
            if separate is not None and separate["total_fps"]:
                ratios.append((shared["resident_mib"] / separate["resident_mib"],
                               shared["total_fps"] / separate["total_fps"]))
        if ratios:
            floors[count] = {"memory_ratio": statistics.median(r[0] for r in ratios),
                             "fps_ratio": statistics.median(r[1] for r in ratios), "rounds": len(ratios)}
    width, height = msg.width, msg.height
    result = {"model": f"EGNet-ResNet18 OS{args.output_stride} (random weights), fp32", "size": [width, height],
              "rate_hz_per_camera": args.rate, "seconds": args.seconds, "rows": rows,
              "one_node_over_separate": floors, "batching_in_process": gains}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "node_cameras_bench.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Cameras per node, {result['model']}, {width}×{height} bgr8 at {args.rate:g} Hz per camera for "
        f"{args.seconds:g} s, CPU", "",
        "| cameras | round | setup | processed frames/s per camera | total frames/s | latency p50 / p90 (ms) | "
        "resident memory (MiB) |", "|---:|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        per_camera = ", ".join(f"{fps:.2f}" for fps in row["per_camera_fps"])
        lines.append(f"| {row['cameras']} | {row['round'] + 1} | {row['setup']} | {per_camera} | "
                     f"{row['total_fps']:.2f} | "
                     f"{row['latency_p50_ms']:.0f} / {row['latency_p90_ms']:.0f} | {row['resident_mib']:.0f} |")
    lines += ["", "| cameras | one node's memory / N nodes' (floor ≤ 0.5) | one node's frames/s / N nodes' "
              "(floor ≥ 1) | rounds (medians) |", "|---:|---:|---:|---:|"]
    for count, ratio in floors.items():
        lines.append(f"| {count} | {ratio['memory_ratio']:.2f} | {ratio['fps_ratio']:.2f} | {ratio['rounds']} |")
    lines += ["", "| frames | one batch (s) | two streams of half (s) | one at a time (s) | one batch's speed-up | "
              "two streams' speed-up |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {count} | {gain['one_batch_s']:.2f} | {gain['two_streams_s']:.2f} | {gain['separate_s']:.2f} | "
              f"{gain['speed_up']:.2f} | {gain['two_streams_speed_up']:.2f} |" for count, gain in gains.items()]
    (args.out / "node_cameras_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _camera_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"camera counts must be positive, like 1,2,4; got {text!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--size", type=parse_size, default=(1024, 512))
    parser.add_argument("--cameras", type=_camera_counts, help="compare one node with N cameras against N nodes, "
                        "for each N listed (1,2,4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="--cameras: publishing time per setup")
    parser.add_argument("--rate", type=float, default=10.0, help="--cameras: frames per second per camera")
    parser.add_argument("--streams", type=_camera_counts, default=[1], help="--cameras: also one node with each of "
                        "these inference_streams (beside its default)")
    parser.add_argument("--rounds", type=int, default=1, help="--cameras: run the setups in turn this many times; "
                        "the ratios are medians over rounds")
    args = parser.parse_args()
    use_fastdds_profile()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # this process and the node's
    width, height = args.size
    msg = _frame_message(width, height)
    model = EGNet(backbone="resnet18", output_stride=args.output_stride)
    if args.cameras:
        cameras_main(args, msg, model)
        return
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
        process = start_segment_node(["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "precision:=fp32"],
                                     domain_id=DOMAIN_ID, log=log)
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
