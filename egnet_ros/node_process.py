"""A ROS 2 console script run as its own process, as a user starts one: on a ROS domain of the caller's choosing,
its log in a file, stopped with a signal. The demo's live replay, the benchmarks and the tests start nodes
with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

READY_LINE = "ready:"  # what the segmentation node logs once it listens (readiness itself is its class table)
SEGMENT_NODE = "/egnet_segment"


class NodeProcessError(RuntimeError):
    """The process ended, or did not get where it was waited for in time; the text holds its log."""


def node_environment(domain_id: int) -> dict[str, str]:
    """This process's environment (so the same Fast DDS profile) on ``domain_id``, discovery on this host only,
    logs unbuffered so that they can be read while the process runs."""
    return os.environ | {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
    }


class NodeProcess:
    def __init__(self, command: Sequence[str | os.PathLike], *, domain_id: int, log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, background: bool = False) -> None:
        """``env`` is added to :func:`node_environment`; ``background``: SIGINT ignored, as a shell's ``cmd &``."""
        self.log_path = Path(log)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(part) for part in command], env=node_environment(domain_id) | dict(env or {}), cwd=cwd,
            stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None,
        )

    @classmethod
    def script(cls, name: str, args: Sequence[str], **options) -> NodeProcess:
        """One of this environment's console scripts (``egnet-segment``, ``egnet``) with ``args``."""
        executable = Path(sys.executable).with_name(name)
        if not executable.exists():
            raise FileNotFoundError(f"console script {str(executable)!r} is missing: install the project with "
                                    "pip install -e '.[ros]'")
        return cls([executable, *args], **options)

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_line(self, text: str, timeout: float = 90.0) -> None:
        """Until ``text`` appears in the log; NodeProcessError if the process ends or the time runs out first."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                raise NodeProcessError(f"{self.log_path.name}: the process exited with {self.process.returncode} "
                                       f"before {text!r}; its log:\n{self.output}")
            if time.monotonic() > deadline:
                raise NodeProcessError(f"{self.log_path.name}: no {text!r} within {timeout} s; its log:\n{self.output}")
            time.sleep(0.1)

    def wait_until_ready(self, domain_id: int, node: str = SEGMENT_NODE, timeout: float = 90.0) -> None:
        """Until the segmentation node ``node`` (its full name) has published its latched class table, which it
        does once warmed up and subscribed; NodeProcessError if the process ends or the time runs out first.
        Asked over ROS rather than read from the log, as any other node would."""
        import rclpy  # here: the rest of this module serves processes that are not ROS nodes too
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from .segment_node import LATCHED

        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        try:
            probe = rclpy.create_node("egnet_readiness_probe", context=context)
            tables: list[String] = []
            probe.create_subscription(String, f"{node}/class_info", tables.append, LATCHED)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(probe)
            deadline = time.monotonic() + timeout
            while not tables:
                if self.process.poll() is not None:
                    raise NodeProcessError(f"{self.log_path.name}: the process exited with {self.process.returncode} "
                                           f"before {node} was ready; its log:\n{self.output}")
                if time.monotonic() > deadline:
                    raise NodeProcessError(f"{self.log_path.name}: {node} not ready (no {node}/class_info) within "
                                           f"{timeout} s; its log:\n{self.output}")
                executor.spin_once(timeout_sec=0.1)
        finally:
            rclpy.try_shutdown(context=context)

    def handles(self, sig: int) -> bool:
        """Whether the process has installed a handler for ``sig`` (the SigCgt mask of /proc/PID/status)."""
        caught = int(self._status("SigCgt"), 16)
        return bool(caught >> (sig - 1) & 1)

    def resident_mib(self) -> float:
        """The process's resident memory now (VmRSS of /proc/PID/status), in MiB."""
        return int(self._status("VmRSS")) / 1024

    def _status(self, field: str) -> str:
        """The first value of ``field`` in /proc/PID/status (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:"))

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """``sig`` (Ctrl-C by default), then the exit status; killed, and NodeProcessError, past ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise NodeProcessError(f"{self.log_path.name}: still running {timeout} s after signal {sig}; killed. "
                                   f"Its log:\n{self.output}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


def start_segment_node(ros_args: Sequence[str], *, domain_id: int, log: Path, timeout: float = 120.0,
                       name: str = SEGMENT_NODE) -> NodeProcess:
    """``egnet-segment --ros-args ROS_ARGS`` once it is ready (``name``: its full name, when ROS_ARGS rename it);
    none is left behind if it never is (or on Ctrl-C)."""
    node = NodeProcess.script("egnet-segment", ["--ros-args", *ros_args], domain_id=domain_id, log=log)
    try:
        node.wait_until_ready(domain_id, name, timeout=timeout)
    except BaseException:
        node.kill()
        raise
    return node
