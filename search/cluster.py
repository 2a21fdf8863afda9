"""Connecting the search to Ray: a local instance in this process, or an existing cluster by address.

    started = connect(None, num_cpus=2)        # a new local Ray (no dashboard, quiet)
    started = connect("10.0.0.5:6379")        # a running cluster; a clear error within seconds if absent
    ...
    disconnect(started)                        # shuts Ray down (or detaches) only if connect() started it

`ray.init` on an address where no Ray answers can retry for many minutes, so a ``HOST:PORT`` address is
first checked with one request to the cluster's GCS, with a 5 s deadline (`check_gcs`). ``auto`` finds the
cluster that ``ray start`` left on this machine. A local instance is started with ``address="local"``:
plain ``ray.init()`` would join a cluster started by ``ray start`` on the same machine instead, and then
refuse ``num_cpus``.

`worker_options` decides what each evaluation worker reserves: a share of a GPU on a cluster that has GPUs,
else CPUs; never a GPU on a cluster without one, where such an actor would wait forever. A worker count
the cluster cannot hold now is a ClusterError naming ``search.workers`` and what fits, rather than
actors that wait in Ray for resources that never come (leave it unset to follow the cluster).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 5.0
TOKEN_HINT = "RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token (or in RAY_AUTH_TOKEN)"
GCS_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # every Ray GCS since 2.x serves it


class ClusterError(RuntimeError):
    """Ray cannot be reached or started; the message says which address and what to check."""


def connect(address: str | None, num_cpus: int | None = None, worker_logs: bool = False) -> bool:
    """Start a local Ray (``address`` None) or join the cluster at ``address``; True if this call did
    either (so the caller should `disconnect`), False when Ray was already initialised in this process.
    ``worker_logs``: the workers' stdout and stderr come to this driver (`search.ray_output` files them)."""
    import ray

    check_address(address)
    if ray.is_initialized():  # e.g. a notebook or a test session that set Ray up itself: use it as it is
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": worker_logs}
    if address is None:
        # A new local instance turns on token authentication and warns that it did; nothing to act on here.
        auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = auth_log.level
        auth_log.setLevel(logging.ERROR)
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        finally:
            auth_log.setLevel(level)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        hint = ""
        if _caused_by(err, ray.exceptions.AuthenticationError):
            hint = f"\nThe cluster uses token authentication: run with {TOKEN_HINT}."
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {err}{hint}") from None
    return True


def _caused_by(err: BaseException | None, kind: type[BaseException]) -> bool:
    seen = 0
    while err is not None and seen < 10:  # Ray wraps the cause a few times over
        if isinstance(err, kind):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def check_address(address: str | None) -> None:
    """Raise ClusterError, within seconds, unless a Ray cluster answers at ``address`` (None: nothing to
    check)."""
    if address is None:
        return
    target = _resolve(address)
    if target is None:
        return
    if address.startswith("ray://"):  # the Ray Client server speaks its own protocol: a TCP check only
        check_reachable(address, target)
    else:
        check_gcs(address, target)


def disconnect(started: bool) -> None:
    """Shut down the local Ray, or detach from the cluster, if `connect` started it."""
    import ray

    if started and ray.is_initialized():
        ray.shutdown()


def _resolve(address: str) -> tuple[str, int] | None:
    """(host, port) to check for ``HOST:PORT`` or ``ray://HOST:PORT``; for ``auto``, the address that
    ``ray start`` recorded on this machine, if it can be read (else Ray's own lookup reports)."""
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except Exception:  # a private helper: if it moved or failed, ray.init explains
            return None
        return _host_port(found, address) if found else None
    return _host_port(address, address)


def _host_port(text: str, address: str) -> tuple[str, int]:
    host, sep, port = text.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected auto, HOST:PORT (the head's GCS port, 6379 by "
                           "default) or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def check_reachable(address: str, target: tuple[str, int], timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterError unless a TCP connection to ``target`` opens within ``timeout`` seconds."""
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
        raise ClusterError(_unreachable(address, target, timeout, reason)) from None


def check_gcs(address: str, target: tuple[str, int], timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterError unless a Ray GCS answers one request at ``target`` within ``timeout`` seconds.

    A TCP connect is not enough: a proxy or a firewall may accept any connection, and ray.init then
    retries for many minutes. So one real request goes to the GCS (its cluster id, over gRPC); any
    reply of the GCS, a refusal to an unauthenticated caller included, shows a Ray cluster is there.
    """
    import grpc

    host, port = target
    channel = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.enable_http_proxy", 0)])
    try:
        call = channel.unary_unary(GCS_PROBE_METHOD, request_serializer=None, response_deserializer=None)
        call(b"", timeout=timeout)
    except grpc.RpcError as err:
        code, details = err.code(), (err.details() or "").strip()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
                # Else ray.init retries for about 20 s, printing Ray's C++ warning once a second.
                raise ClusterError(f"the Ray cluster at {address} wants a token (token authentication) and "
                                   f"this process sends none: run with {TOKEN_HINT}") from None
            return  # a Ray GCS that wants a token, which this process sends: ray.init checks it
        if code == grpc.StatusCode.UNIMPLEMENTED and "http2 header" not in details:
            return  # a gRPC server without this method: perhaps another Ray version; let ray.init judge
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = "no answer"
        elif code == grpc.StatusCode.UNAVAILABLE:
            reason = details.rsplit(": ", 1)[-1].strip(" []").lower() or "unavailable"
        else:
            raise ClusterError(f"something answers at {address}, but not a Ray cluster's GCS ({code.name}: "
                               f"{details}); give the head node's GCS port (6379 by default)") from None
        raise ClusterError(_unreachable(address, target, timeout, reason)) from None
    finally:
        channel.close()


def _unreachable(address: str, target: tuple[str, int], timeout: float, reason: str) -> str:
    host, port = target
    return (f"no Ray cluster answers at {address}: {reason} (tried {host}:{port} for up to {timeout:g} s). "
            f"Is the head node running (`ray start --head --port={port}`) and its port reachable from here?")


@dataclass(frozen=True)
class WorkerOptions:
    """What each worker reserves (Ray actor options), its torch threads, and how many workers to run."""

    ray_options: dict[str, float]
    threads: int
    workers: int
    uses_gpu: bool


def worker_options(workers: int | None, cpus_per_worker: int, gpu_fraction: float,
                   key: str = "workers") -> WorkerOptions:
    """Resources per worker and the number of workers (``workers``, or what the cluster holds); a
    ClusterError naming ``key`` when the cluster cannot hold ``workers`` of them, or one (module
    docstring)."""
    import ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if gpus > 0:
        # GPU workers reserve no CPU, so a GPU node's CPU count never limits how many share its GPUs;
        # each still runs cpus_per_worker torch threads for its host-side work.
        fits = int(gpus / gpu_fraction + 1e-9)
        _check_fits(workers, fits, key, f"{gpus:g} GPUs at a share of {gpu_fraction:g} each")
        return WorkerOptions({"num_gpus": gpu_fraction, "num_cpus": 0}, cpus_per_worker, workers or fits,
                             True)
    cpus = float(resources.get("CPU", os.cpu_count() or 1))
    fits = int(cpus // cpus_per_worker)
    _check_fits(workers, fits, key, f"{cpus:g} CPUs at {cpus_per_worker} each")
    return WorkerOptions({"num_cpus": cpus_per_worker}, cpus_per_worker, workers or fits, False)


def _check_fits(workers: int | None, fits: int, key: str, holds: str) -> None:
    # A worker that cannot be placed waits in Ray for ever (an autoscaler aside, which an unset count
    # follows): one line now instead.
    if fits < 1:
        raise ClusterError(f"the Ray cluster cannot hold one evaluation worker ({holds}): ask each for less")
    if workers is not None and workers > fits:
        raise ClusterError(f"{key} is {workers}, but the Ray cluster holds {fits} workers ({holds}); set "
                           f"{key} to at most {fits}, or leave it unset to follow the cluster")
