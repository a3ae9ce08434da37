"""The segmentation node's process, behind the console scripts ``egnet-segment`` and ``segment_node``.

Stop signals are handled first, then come the node's imports (torch and rclpy, seconds of them), then the
start-up steps one by one (parameters and model, warm-up, subscriptions), so that SIGINT or SIGTERM at any
moment ends the process cleanly; the imports are inside the functions for that reason.

Exit status: 0 after SIGINT or SIGTERM (also during start-up); 1 when it cannot start or its worker failed;
3 when ``max_consecutive_failures`` frames in a row failed at inference.
"""

from __future__ import annotations

from .stop_signals import StopSignals


def main(args: list[str] | None = None) -> int:
    stop = StopSignals()
    return _run(args, stop)


def _spin(node, stop: StopSignals) -> None:
    """Spin until SIGINT or SIGTERM, unless one came already."""
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    from rclpy.signals import SignalHandlerOptions, install_signal_handlers

    # rclpy's handlers shut the context down, which ends spin, and then call the StopSignals handlers. Installed
    # only now, so that no start-up step met a shut-down context; a signal that came earlier was only recorded.
    install_signal_handlers(SignalHandlerOptions.ALL)
    if stop.requested:
        return
    try:
        rclpy.spin(node)
    except _rclpy.RCLError:
        # A signal's shutdown can land between spin's check of the context and its wait set, which rcl then
        # refuses ("the given context is not valid"): the same clean stop as ExternalShutdownException.
        if rclpy.ok():
            raise


def _run(args: list[str] | None, stop: StopSignals) -> int:
    """Run the node until SIGINT or SIGTERM (exit status 0), also when one arrives during start-up; 1 when it
    cannot start or its worker failed, 3 after ``max_consecutive_failures`` failed frames in a row. ``stop``: the
    console script's StopSignals, installed before the imports."""
    import rclpy
    from rclpy.exceptions import NameValidationException, ParameterException
    from rclpy.executors import ExternalShutdownException

    from .dds import use_fastdds_profile
    from .segment_node import EXIT_FAILED, NODE_NAME, SegmentNode, WarmUpError
    from .segment_parameters import ParameterError, init_rclpy

    if stop.requested:
        return 0  # SIGINT or SIGTERM while torch and rclpy were imported: nothing had started
    use_fastdds_profile()
    node, rclpy_handlers = None, False
    try:
        init_rclpy(args)
        # A signal from here to _spin is only recorded; each step runs to its end and the next is skipped.
        if not stop.requested:
            node = SegmentNode()
        if node is not None and not stop.requested:
            node.warm_up()
        if node is not None and not stop.requested:
            node.listen()
            rclpy_handlers = True
            _spin(node, stop)
    except (ParameterError, ParameterException, NameValidationException, WarmUpError) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        return EXIT_FAILED
    except ExternalShutdownException:
        pass  # SIGINT or SIGTERM: rclpy's handler has shut the context down, which ends spin
    finally:
        if node is not None:
            summary, logger_name = node.close(), node.get_logger().name
            node.destroy_node()
            # Logged after destroy_node: the node's logger would also publish to /rosout, whose context a
            # signal has already shut down.
            rclpy.logging.get_logger(logger_name).info(f"summary: {summary}")
        # Uninstalling handlers that were never installed would put SIG_DFL back for a moment.
        rclpy.try_shutdown(uninstall_handlers=rclpy_handlers)
    return node.exit_code if node is not None else 0
