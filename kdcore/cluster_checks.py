"""Before a sweep starts on Ray: ray is installed, the cluster answers, a trial fits on some node,
and every such node sees the run folders, the teacher and the data at the same paths.

Each check fails with a `ClusterError` that says what to do, and none creates a run, so a sweep
that cannot run on the cluster leaves nothing behind. An address that does not answer is refused
within 30 s: a TCP connect first (a wrong host or port fails at once), then a throwaway driver
in a child process that must join the cluster in time (`ray.init` itself waits for minutes on a
port that is open but is not a Ray head).

>>> host_port("ray://head:10001"), host_port("head"), host_port("auto")
(('head', 10001), ('head', 6379), None)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from kdcore.data import CIFAR10, SYNTHETIC
from kdcore.runs import teacher_checkpoint
from kdcore.sweep import SweepError, SweepSpec

INSTALL_HINT = "pip install -r requirements-cluster.txt"
CONNECT_SECONDS = 5.0  # the TCP connect to the address
HANDSHAKE_SECONDS = 20.0  # the throwaway driver must have joined by then (both: under 30 s)
CHECK_SECONDS = 60.0  # every node must have answered the storage check by then
HANDSHAKE = (
    "import sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
    "print(len(ray.nodes()))"
)
TOKEN_PREFIX = ".kdcore-storage-check-"


class ClusterError(SweepError):
    """Ray is missing, unreachable or cannot run this sweep; the message says why."""


def import_ray() -> Any:
    """The ray module; ClusterError saying how to install it when it is not there."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--executor ray needs the ray package: {INSTALL_HINT}") from None
    return ray


def check_answers(address: str) -> None:
    """ClusterError within 30 s unless a Ray cluster answers at `address`."""
    where = host_port(address)
    if where is not None:
        try:
            socket.create_connection(where, timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise ClusterError(
                f"The Ray cluster at {address} does not answer ({error.strerror or error}). "
                "Start it with `ray start --head` on the head node and give its address "
                "(HEAD:6379, or ray://HEAD:10001 for Ray Client)."
            ) from None
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        subprocess.run(
            [sys.executable, "-c", HANDSHAKE, address],
            capture_output=True, text=True, env=environment, timeout=HANDSHAKE_SECONDS, check=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"The Ray cluster at {address} does not answer: something listens there, but no Ray "
            f"driver could join it within {HANDSHAKE_SECONDS:.0f} s. Give the head's address "
            "(HEAD:6379, or ray://HEAD:10001 for Ray Client)."
        ) from None
    except subprocess.CalledProcessError as error:
        lines = [line for line in (error.stderr or "").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {error.returncode}"
        raise ClusterError(f"Cannot join the Ray cluster at {address}: {reason}") from None


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "HOST:PORT", "HOST" or "ray://HOST:PORT"; None for "auto" and the like."""
    scheme, separator, rest = address.partition("://")
    if not separator:
        scheme, rest = "", address
    rest = rest.rstrip("/")
    if scheme not in ("", "ray") or rest in ("auto", "local"):
        return None
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    return host, int(port) if port.isdigit() else (10001 if scheme == "ray" else 6379)


def trial_nodes(ray: Any, trial_cpus: int, trial_gpus: float, where: str) -> list[dict[str, Any]]:
    """The alive nodes a trial fits on; ClusterError (listing the nodes) when there is none,
    where Ray would otherwise wait forever."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    fits = [
        node
        for node in nodes
        if node["Resources"].get("CPU", 0) >= trial_cpus
        and node["Resources"].get("GPU", 0) >= trial_gpus
    ]
    if not fits:
        have = "; ".join(
            f"{node_name(node)}: {node['Resources'].get('CPU', 0):g} CPUs, "
            f"{node['Resources'].get('GPU', 0):g} GPUs"
            for node in nodes
        )
        raise ClusterError(
            f"No node of {where} can run a trial asking for {trial_cpus} CPUs and "
            f"{trial_gpus:g} GPUs ({have or 'no node is alive'}). Lower --trial-cpus or "
            "--trial-gpus, or add a node that has them."
        )
    return fits


def check_shared_storage(
    ray: Any, nodes: list[dict[str, Any]], spec: SweepSpec, root: Path
) -> None:
    """Each node reads a token written under `root` at the same absolute path and finds the
    teacher and the data; ClusterError naming the node and the path if one cannot."""
    root = Path(root).resolve()
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    token_path, token = root / f"{TOKEN_PREFIX}{secrets.token_hex(4)}", secrets.token_hex(16)
    _write_token(token_path, token)
    try:
        problems = _probe_nodes(ray, nodes, str(token_path), token, needed_paths(spec, root))
    finally:
        token_path.unlink(missing_ok=True)
        if made_root:  # an empty folder made only for the check goes again
            with contextlib.suppress(OSError):
                root.rmdir()
    if problems:
        raise ClusterError(
            "The runs folder must be on storage every Ray node sees at the same path. "
            f"{' '.join(problems)} Put --out (and the teacher and the data) on shared storage "
            "(NFS or the like) mounted at the same path on every node. No runs were created."
        )


def needed_paths(spec: SweepSpec, root: Path) -> list[tuple[str, str]]:
    """What trials read besides the runs folder: the teacher, a data path, and the working
    directory when a path is relative to it (the workers change into it)."""
    paths = [("teacher checkpoint", str(teacher_checkpoint(spec.teacher, root).resolve()))]
    relative = spec.teacher.endswith(".pt") and not Path(spec.teacher).expanduser().is_absolute()
    data = str(spec.training.get("data", ""))
    if data == CIFAR10:  # data/cifar10 under the working directory
        relative = True
    elif data != SYNTHETIC and Path(data).expanduser().exists():
        paths.append(("data", str(Path(data).expanduser().resolve())))
        relative = relative or not Path(data).expanduser().is_absolute()
    if relative:
        paths.append(("working directory", os.getcwd()))
    return paths


def _probe_nodes(ray, nodes, token_path: str, token: str, paths) -> list[str]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(probe_storage)
    refs = {
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(token_path, token, paths): node
        for node in nodes
    }
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=CHECK_SECONDS)
    problems = [
        f"Node {node_name(refs[ref])} did not answer the check within {CHECK_SECONDS:.0f} s."
        for ref in late
    ]
    for ref in ready:
        try:
            seen = ray.get(ref)
        except ray.exceptions.RayError as error:
            seen = [f"the check failed there ({type(error).__name__}: {first_line(error)})"]
        problems += [f"Node {node_name(refs[ref])}: {problem}." for problem in seen]
    return problems


def _write_token(path: Path, token: str) -> None:
    path.write_text(token)


def probe_storage(token_path: str, token: str, paths: list[tuple[str, str]]) -> list[str]:
    """On one node (a Ray task): what it cannot see; empty when it sees the token and every path."""
    problems = []
    try:
        if Path(token_path).read_text() != token:
            problems.append(f"{token_path} holds another token there: another folder is mounted")
    except OSError as error:
        problems.append(f"{token_path} cannot be read there ({error.strerror or error})")
    for what, path in paths:
        if not os.path.exists(path):
            problems.append(f"the {what} {path} does not exist there")
    return problems


def node_name(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerHostname', '?')} ({node.get('NodeManagerAddress', '?')})"


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
