"""Several Triton servers on one model repository, and a client that spreads load over them.

- :class:`LocalReplicas` runs N :class:`LocalTritonServer` on the same repository (a local
  folder or ``s3://BUCKET/PREFIX``), each on its own ports.
- :class:`ReplicaClient` (``ReplicaClient([url, url, ...], model)``, or :func:`connect`) sends
  each inference to one replica, chosen round robin or by least outstanding requests, and
  retries it on another replica when the chosen one is unreachable, answers "unavailable" (the
  model not ready, connection refused or reset) or does not answer within ``timeout`` (a hung
  server): inference is idempotent here.
- A replica that failed so is **down**: no request goes to it while another replica is up. A
  health probe (the model's readiness, with ``probe_timeout``), run in the background every
  ``down_secs`` while requests come, brings it back when it answers ready. So a hung replica
  costs one timeout to the request that found it, not one per request; a restarted replica is
  picked up by itself. When every replica is down, requests still try them (soonest probe first).

Retry accounting (what the failover test checks): every call of :meth:`ReplicaClient.infer`
either returns one answer or raises; ``attempts = answered + retries + failed calls``, each
retry is one failed attempt on a replica that was then left for another one, and a server's
success count equals the answers the client received from it (an attempt that failed may still
have run on a server killed before it could answer; its count died with it).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._client import Client, ModelInfo
from ._errors import (
    ConfigError,
    ModelNotFoundError,
    ServerError,
    ServerStartError,
    ServerTimeoutError,
    ServerUnavailableError,
    TritonRepoError,
)
from ._server import LocalTritonServer
from ._server_config import ServerConfig, moved_keywords_error

__all__ = [
    "BALANCE", "LocalReplicas", "ReplicaClient", "ReplicaStats", "connect", "serve_replicas", "split_urls",
]  # fmt: skip

#: Load-balancing policies of :class:`ReplicaClient`.
BALANCE = ("round_robin", "least_outstanding")
#: Server answers that mean "this replica cannot serve now; another one may".
_UNAVAILABLE_STATUSES = ("StatusCode.UNAVAILABLE", "503", "StatusCode.CANCELLED")
_REPLICA_OPTIONS = ("balance", "max_attempts", "down_secs", "probe_timeout")


def split_urls(url: str | Sequence[str]) -> list[str]:
    """``"h:1,h:2"`` or ``["h:1", "h:2"]`` -> ``["h:1", "h:2"]`` (no empty or repeated URL)."""
    urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else [str(u).strip() for u in url]
    if not urls or any(not u for u in urls):
        raise ConfigError(f"url={url!r}; expected one or more host:port, separated by commas")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"url={url!r} names a replica twice; expected distinct host:port")
    return urls


def connect(url: str | Sequence[str], model: str, **kwargs: Any) -> Client:
    """A :class:`Client` for one URL, a :class:`ReplicaClient` for several (a list, or
    ``"h:1,h:2"``); ``kwargs`` as theirs. The replica options (``balance``, ``max_attempts``,
    ``down_secs``, ``probe_timeout``) are accepted with one URL too, and have nothing to do then."""
    urls = split_urls(url)
    if len(urls) > 1:
        return ReplicaClient(urls, model, **kwargs)
    for key in _REPLICA_OPTIONS:
        kwargs.pop(key, None)
    return Client(urls[0], model, **kwargs)


def is_retryable(exc: BaseException) -> bool:
    """Whether another replica may answer what this one could not (a timeout included: the
    replica may hang, and inference is idempotent)."""
    if isinstance(exc, ServerUnavailableError | ModelNotFoundError | ServerTimeoutError):
        return True
    if isinstance(exc, ServerError):
        status = str(exc.status or "")
        message = (exc.server_message or str(exc)).lower()
        return status in _UNAVAILABLE_STATUSES or any(
            marker in message
            for marker in ("connection reset", "connection refused", "connection closed", "broken pipe",
                           "unavailable", "httpconnectionclosed",
                           "remotedisconnected", "connection aborted", "socket closed")
        )  # fmt: skip
    return False


@dataclasses.dataclass
class ReplicaStats:
    """Client-side counts for one replica.

    Attributes:
        ok: answers received from it.
        failed: inference attempts that failed on it (each retried elsewhere or raised).
        timeouts: attempts of any call (metadata included) that it did not answer in time.
        outstanding: requests in flight to it now.
        down: whether it is skipped until a health probe finds its model ready.
        down_until: while down, ``time.monotonic()`` of its next health probe (0: up).
        probes: health probes run on it.
    """

    ok: int = 0
    failed: int = 0
    timeouts: int = 0
    outstanding: int = 0
    down: bool = False
    down_until: float = 0.0
    probes: int = 0


class ReplicaClient(Client):
    """A :class:`Client` over several replicas of one server.

    Example::

        client = ReplicaClient(["127.0.0.1:8001", "127.0.0.1:8011"], "unet")
        y = client.infer(x)     # one replica answers; another one if it cannot

    Args:
        urls: replicas as ``["host:port", ...]`` or ``"host:port,host:port"``.
        model, protocol, timeout, version, headers: as :class:`Client`, for every replica;
            ``headers`` may also be a list with one dict per URL (each local server has its own
            admin key, which shared memory needs).
        shared_memory: as :class:`Client`; each replica gets its own regions (same host only).
        balance: ``"round_robin"`` or ``"least_outstanding"``.
        max_attempts: replicas one inference may try (default: all of them).
        down_secs: interval of the health probes of a replica that is down.
        probe_timeout: seconds a health probe waits (default ``min(timeout, 2)``).

    Attributes:
        replicas: one single-URL :class:`Client` per replica.
        retries: attempts that failed on one replica and moved to another.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        model: str,
        *,
        protocol: str = "grpc",
        timeout: float = 60.0,
        version: str | int = "",
        headers: dict[str, str] | Sequence[dict[str, str] | None] | None = None,
        balance: str = "round_robin",
        max_attempts: int | None = None,
        down_secs: float = 1.0,
        probe_timeout: float | None = None,
        shared_memory: str | None = None,
    ):
        url_list = split_urls(urls)
        if balance not in BALANCE:
            raise ConfigError(f"balance={balance!r}; expected one of {BALANCE}")
        if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
            raise ConfigError(f"max_attempts={max_attempts!r}; expected an integer >= 1 or None")
        if not down_secs >= 0:
            raise ConfigError(f"down_secs={down_secs!r}; expected >= 0")
        if probe_timeout is not None and not probe_timeout > 0:
            raise ConfigError(f"probe_timeout={probe_timeout!r}; expected a positive number of seconds")
        per_url = list(headers) if isinstance(headers, (list, tuple)) else [headers] * len(url_list)
        if len(per_url) != len(url_list):
            raise ConfigError(f"headers: got {len(per_url)} dicts for {len(url_list)} URLs; expected "
                              "one dict for all, or one per URL")
        self.replicas = [
            Client(u, model, protocol=protocol, timeout=timeout, version=version, headers=h,
                   shared_memory=shared_memory)
            for u, h in zip(url_list, per_url, strict=True)
        ]
        first = self.replicas[0]
        self.probe_timeout = float(probe_timeout or min(first.timeout, 2.0))
        self._probes = [
            Client(u, model, protocol=protocol, timeout=self.probe_timeout, version=version, headers=h)
            for u, h in zip(url_list, per_url, strict=True)
        ]
        self.url = ",".join(c.url for c in self.replicas)
        self.urls = [c.url for c in self.replicas]
        self.model, self.protocol, self.timeout = first.model, first.protocol, first.timeout
        self.version, self.headers = first.version, first.headers
        self.balance = balance
        self.max_attempts = max_attempts or len(url_list)
        self.down_secs = float(down_secs)
        self.retries = 0
        self.calls_failed = 0
        self._stats = {u: ReplicaStats() for u in self.urls}
        self._probing: set[int] = set()
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._info: ModelInfo | None = None
        self._info_lock = threading.Lock()

    # ------------------------------------------------------------------------- choosing

    def _order(self) -> list[int]:
        """Replicas to try, best first: up ones by policy, then down ones (soonest probe first).

        Starts the health probe of each down replica whose probe is due."""
        now = time.monotonic()
        n = len(self.replicas)
        due = []
        with self._lock:
            start = next(self._next) % n
            ring = [(start + k) % n for k in range(n)]
            up = [i for i in ring if not self._stats[self.urls[i]].down]
            down = sorted((i for i in ring if i not in up),
                          key=lambda i: self._stats[self.urls[i]].down_until)  # fmt: skip
            for i in down:
                if self._stats[self.urls[i]].down_until <= now and i not in self._probing:
                    self._probing.add(i)
                    due.append(i)
            if self.balance == "least_outstanding":
                up.sort(key=lambda i: self._stats[self.urls[i]].outstanding)  # stable: ring breaks ties
        for i in due:
            threading.Thread(target=self._probe, args=(i,), name=f"probe-{self.urls[i]}", daemon=True).start()
        return (up + down)[: self.max_attempts]

    def _probe(self, index: int) -> bool:
        """One health probe of replica ``index``: up again if its model answers ready."""
        probe = self._probes[index]
        try:
            ready = probe.is_ready()
        finally:
            probe.close()  # this thread's connection: a hung peer is not reused
        self._mark(index, up=ready, probed=True)
        return ready

    def _mark(self, index: int, *, up: bool, probed: bool = False) -> None:
        with self._lock:
            stats = self._stats[self.urls[index]]
            if probed:
                stats.probes += 1
                self._probing.discard(index)
            stats.down = not up
            stats.down_until = 0.0 if up else time.monotonic() + self.down_secs

    def _run(self, what: str, fn: Callable[[Client], Any], *, counted: bool = True) -> Any:
        """``fn(replica_client)`` on one replica, failing over to the next while retryable.

        Only inferences are ``counted`` in ``ok``/``failed`` of :meth:`replica_stats` and in
        :meth:`counts`; a failure of any call marks the replica down.
        """
        last: TritonRepoError | None = None
        order = self._order()
        for attempt, index in enumerate(order):
            url = self.urls[index]
            stats = self._stats[url] if counted else ReplicaStats()  # metadata calls: a scratch record
            with self._lock:
                stats.outstanding += 1
            try:
                result = fn(self.replicas[index])
            except TritonRepoError as exc:
                retry = is_retryable(exc)
                with self._lock:
                    stats.outstanding -= 1
                    stats.failed += 1
                    if isinstance(exc, ServerTimeoutError):
                        self._stats[url].timeouts += 1
                    if retry and attempt + 1 < len(order) and counted:
                        self.retries += 1
                    if (not retry or attempt + 1 >= len(order)) and counted:
                        self.calls_failed += 1
                if not retry:
                    raise
                self._mark(index, up=False)
                last = exc
                continue
            with self._lock:
                stats.outstanding -= 1
                stats.ok += 1
            if self._stats[url].down:
                self._mark(index, up=True)
            return result
        assert last is not None
        if isinstance(last, ServerUnavailableError | ServerTimeoutError):
            raise type(last)(
                f"{what}: every replica tried failed ({len(order)} of {len(self.urls)}: "
                f"{', '.join(self.urls[i] for i in order)}); last: {last}"
            ) from last
        raise last

    # ---------------------------------------------------------------------- the Client API

    def close(self) -> None:
        for replica in self.replicas + self._probes:
            replica.close()

    def is_ready(self) -> bool:
        """Whether at least one replica is ready."""
        return bool(self.ready_replicas())

    def ready_replicas(self) -> list[str]:
        """URLs of the replicas whose model answers ready (probed in parallel, each within
        ``probe_timeout``; a replica found ready is up again)."""
        ready = [False] * len(self.replicas)

        def probe(i: int) -> None:
            ready[i] = self._probe(i)

        self._on_every_replica(probe)
        return [url for url, ok in zip(self.urls, ready, strict=True) if ok]

    def _on_every_replica(self, fn: Callable[[int], None]) -> None:
        """``fn(i)`` for every replica index at once, each in a thread of its own; returns when
        all are done (so a hung replica costs its own timeout, not the others' too)."""
        threads = [threading.Thread(target=fn, args=(i,), daemon=True) for i in range(len(self.replicas))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def wait_ready(
        self, timeout: float = 60.0, *, interval: float = 0.2, replicas: int | None = None
    ) -> Client:
        """Wait until ``replicas`` replicas (default: all) have the model ready.

        Raises:
            ServerTimeoutError: fewer were ready after ``timeout`` seconds.
        """
        want = len(self.replicas) if replicas is None else replicas
        if not 1 <= want <= len(self.replicas):
            raise ConfigError(f"replicas={replicas!r}; expected 1..{len(self.replicas)}")
        deadline = time.monotonic() + timeout
        while True:
            ready = self.ready_replicas()
            if len(ready) >= want:
                return self
            if time.monotonic() >= deadline:
                raise ServerTimeoutError(
                    f"model {self.model!r}: {len(ready)} of {len(self.replicas)} replicas ready after "
                    f"{timeout:g}s (wanted {want}); ready: {ready}"
                )
            time.sleep(interval)

    def info(self, *, refresh: bool = False) -> ModelInfo:
        """The model's metadata, from the first replica that answers (retried like inference)."""
        with self._info_lock:
            if self._info is None or refresh:
                self._info = self._run("info", lambda c: c.info(refresh=True), counted=False)
            return self._info

    def infer(self, x: np.ndarray, *, output: str | None = None) -> np.ndarray:
        """Run the model on one replica, failing over to another; see :meth:`Client.infer`."""
        self.check_input(x)  # bad input fails here, once, never retried
        return self._run("infer", lambda c: c.infer(x, output=output))

    def statistics(self) -> dict[str, Any]:
        """Each reachable replica's inference statistics, by URL (None: unreachable).

        The replicas are asked in parallel, each on a connection of its own that is dropped
        afterwards: hung replicas cost one ``timeout`` in all, not one each."""
        out: dict[str, Any] = dict.fromkeys(self.urls)

        def ask(i: int) -> None:
            replica = self.replicas[i]
            try:
                out[replica.url] = replica.statistics()
            except (ServerUnavailableError, ServerTimeoutError, ServerError):
                pass
            finally:
                replica._drop_connection()  # this thread's; a hung peer is never reused

        self._on_every_replica(ask)
        return out

    def server_success_counts(self) -> dict[str, int | None]:
        """Each replica's own count of successful inferences of this model (None: unreachable);
        compare with :meth:`replica_stats` ``ok`` to check that nothing was lost."""
        return {url: None if st is None else success_count(st) for url, st in self.statistics().items()}

    def replica_stats(self) -> dict[str, ReplicaStats]:
        """Client-side counts per replica (a copy)."""
        with self._lock:
            return {url: dataclasses.replace(stats) for url, stats in self._stats.items()}

    def counts(self) -> dict[str, int]:
        """Totals: ``answered``, ``attempts``, ``retries``, ``failed_calls``."""
        with self._lock:
            ok = sum(s.ok for s in self._stats.values())
            failed = sum(s.failed for s in self._stats.values())
            return {"answered": ok, "attempts": ok + failed, "retries": self.retries,
                    "failed_calls": self.calls_failed}  # fmt: skip

    def __repr__(self) -> str:
        return (f"ReplicaClient({self.urls!r}, {self.model!r}, protocol={self.protocol!r}, "
                f"balance={self.balance!r})")


def success_count(statistics: dict[str, Any] | None) -> int:
    """Successful inferences in one server's statistics answer (HTTP or gRPC JSON)."""
    if not statistics:
        return 0
    total = 0
    for model in statistics.get("model_stats", []):
        success = model.get("inference_stats", {}).get("success", {})
        total += int(success.get("count", 0))
    return total


class LocalReplicas:
    """N local tritonservers on one repository (folder or ``s3://``), each on its own ports.

    Example::

        with LocalReplicas("model_repository", 3) as replicas:
            client = ReplicaClient(replicas.grpc_urls, "unet")

    Args:
        repo_dir: the model repository, shared by every replica.
        replicas: how many servers.
        config: every replica's :class:`ServerConfig`; replica ``i`` gets each given port
            plus ``i * port_stride`` (``None`` ports: free ones).
        port_stride: distance between the ports of consecutive replicas.
        log_file: replica ``i`` logs to ``LOG_FILE.i`` (default: ``config.log_path``, else each
            in its temp folder).
    """

    def __init__(
        self,
        repo_dir: str | os.PathLike[str],
        replicas: int,
        config: ServerConfig | None = None,
        *,
        port_stride: int = 10,
        log_file: str | os.PathLike[str] | None = None,
        **moved: Any,
    ):
        if moved:
            raise moved_keywords_error(moved, "LocalReplicas(repo_dir, replicas, {})")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
            raise ServerStartError(f"replicas={replicas!r}; expected an integer in [1, 64]")
        if port_stride < 3:
            raise ServerStartError(f"port_stride={port_stride}; expected >= 3")
        config = config if config is not None else ServerConfig()

        def port(base: int | None, i: int) -> int | None:
            return None if base is None else base + i * port_stride

        self.servers = [
            LocalTritonServer(
                repo_dir,
                dataclasses.replace(
                    config, http_port=port(config.http_port, i), grpc_port=port(config.grpc_port, i),
                    metrics_port=port(config.metrics_port, i),
                    log_path=config.log_path if log_file is None else f"{os.fspath(log_file)}.{i}",
                ),
            )
            for i in range(replicas)
        ]  # fmt: skip

    @property
    def http_urls(self) -> list[str]:
        return [s.http_url for s in self.servers]

    @property
    def grpc_urls(self) -> list[str]:
        return [s.grpc_url for s in self.servers]

    def start(self) -> LocalReplicas:
        """Start every replica (in parallel) and wait until each is ready."""
        errors: list[BaseException] = []

        def start(server: LocalTritonServer) -> None:
            try:
                server.start()
            except BaseException as exc:  # reported below, with the others stopped
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    def restart(self, index: int) -> LocalTritonServer:
        """Restart replica ``index`` on the same ports (after a crash, or to roll it)."""
        server = self.servers[index]
        server.stop()
        for key in ("http", "grpc", "metrics"):
            server._ports[key] = getattr(server, f"{key}_port")
        return server.start()

    def alive(self) -> list[bool]:
        return [s.is_alive() for s in self.servers]

    def stop(self) -> list[int | None]:
        return [s.stop() for s in self.servers]

    def wait(self) -> None:
        """Block until every replica has exited."""
        for server in self.servers:
            if server.is_alive():
                server.wait()

    def __enter__(self) -> LocalReplicas:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_replicas(
    repo: str | os.PathLike[str],
    replicas: int,
    config: ServerConfig | None = None,
    *,
    log_file: str | os.PathLike[str] | None = None,
    **moved: Any,
) -> None:
    """Run ``replicas`` servers on ``repo`` in the foreground until interrupted (``pixeldcn serve
    REPO --replicas N``).

    Each server's supervisor restarts it after a crash (same ports); a replica still down after
    ``config.ready_timeout`` seconds is restarted from here. Prints each replica's endpoints once they
    are ready. Returns only by an exception (Ctrl-C's ``KeyboardInterrupt``, or what the caller's
    SIGTERM handler raises); the replicas are stopped on the way out.

    Args:
        repo, replicas, config, log_file: as :class:`LocalReplicas`.
    """
    if moved:
        raise moved_keywords_error(moved, "serve_replicas(repo, replicas, {})")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
        raise ConfigError(f"replicas={replicas!r}; expected an integer in [1, 64]")
    config = config if config is not None else ServerConfig()
    ready_timeout = config.ready_timeout
    group = LocalReplicas(repo, replicas, config, log_file=log_file)
    restarts = 0
    try:
        group.start()
        lines = [f"serving {repo} with {replicas} replicas"]
        for i, server in enumerate(group.servers):
            lines.append(f"  replica {i}: HTTP {server.http_url}  gRPC {server.grpc_url}  "
                         f"metrics {server.metrics_url}  log {server.log_path}")  # fmt: skip
        lines.append(f"  ReplicaClient(\"{','.join(group.grpc_urls)}\", MODEL) spreads load and fails over")
        lines.append("press Ctrl-C to stop")
        print("\n".join(lines), flush=True)
        dead_since: dict[int, float] = {}
        while True:
            time.sleep(0.5)
            for i, server in enumerate(group.servers):
                if server.is_alive():
                    dead_since.pop(i, None)
                    continue
                # Each server's own supervisor restarts it after a crash; step in only when it
                # has not within ready_timeout.
                since = dead_since.setdefault(i, time.monotonic())
                if time.monotonic() - since > ready_timeout:
                    restarts += 1
                    print(f"replica {i} stayed down; restarting it (restart {restarts})", file=sys.stderr,
                          flush=True)  # fmt: skip
                    _restart(group, i)
                    dead_since.pop(i, None)
    finally:
        group.stop()


def _restart(replicas: LocalReplicas, index: int, attempts: int = 5) -> None:
    """Restart a replica on its ports, retrying while another process holds one of them."""
    for attempt in range(attempts):
        try:
            replicas.restart(index)
            return
        except ServerStartError as exc:
            if attempt + 1 == attempts:
                raise
            print(f"replica {index} did not start ({str(exc).splitlines()[0]}); retrying",
                  file=sys.stderr, flush=True)  # fmt: skip
            time.sleep(1.0)
