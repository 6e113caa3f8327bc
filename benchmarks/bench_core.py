"""flask-quota's Redis engine against ``limits`` (the engine under Flask-Limiter), in one run.

Usage: ``.venv/bin/python benchmarks/bench_core.py [--quick]`` from the repository root.

Both contenders talk to one private ``redis-server`` this script starts on a free loopback port
(never the shared 6379) through identically configured redis-py pools. Three phases:

1. traffic: round trips, commands sent and bytes sent per check, counted on the client's
   connection (``_wire.py``), and commands executed per check from ``INFO commandstats`` deltas
   (which include the commands a Lua script runs);
2. latency: microseconds per check for 1 and 4 stacked limits, in round-robin blocks
   (flask-quota, limits, limits, flask-quota, ...), medians over rounds;
3. memory: bytes per idle identity after N identities are each hit once with a 1-hour limit,
   from ``MEMORY USAGE`` summed over the keys and from the ``used_memory`` delta; medians over
   rounds in which the contenders alternate going first, after one discarded fill.

A flask-quota check is what the extension does per request: build each limit's key, then one
``RedisStorage.evaluate``. A limits check is what Flask-Limiter does: one ``hit`` per limit
(which builds the key), stopping at the first refusal. Nothing refuses here: the limits are set
far above what one client can send, and a refusal aborts the run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

import redis
from _redis_server import PrivateRedis
from _wire import CountingConnection, WireCounter
from limits import parse as parse_item
from limits.storage import RedisStorage as LimitsStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

import flask_quota
from flask_quota.algorithms import Algorithm, Rule
from flask_quota.keys import limit_part, state_key
from flask_quota.limits import parse_limit
from flask_quota.storage.base import Check
from flask_quota.storage.redis import RedisStorage as QuotaStorage

QUOTA: Final = "flask-quota"
LIMITS: Final = "limits"

#: Four limits on one identity, far above what one client can send, so nothing ever refuses.
#: (10x the issue's example figures: below 100 us per check one client would pass 10000/second.)
STACK: Final = ("100000/second", "1000000/minute", "10000000/hour", "100000000/day")
#: The memory phase's limit; few units per hour, so a bucket's state outlives the measurement.
MEMORY_LIMIT: Final = "100/hour"
#: What the extension would build keys from: QUOTA_KEY_PREFIX's default, an endpoint as scope
#: (Flask-Limiter's scope for a route limit), and by_ip identities.
KEY_PREFIX: Final = "quota"
SCOPE: Final = "index"

#: Which limits strategy each comparable flask-quota algorithm is measured against.
PEERS: Final[dict[Algorithm, type[RateLimiter]]] = {
    Algorithm.FIXED_WINDOW: FixedWindowRateLimiter,
    Algorithm.SLIDING_WINDOW: SlidingWindowCounterRateLimiter,
    Algorithm.SLIDING_LOG: MovingWindowRateLimiter,
}
#: flask-quota algorithms with no limits counterpart, timed alone.
ALONE: Final = (Algorithm.GCRA, Algorithm.TOKEN_BUCKET)
WARMUP_CHECKS: Final = 20
SETTLE_S: Final = 0.5

#: One rate-limit check of one identity; True when admitted.
Checker = Callable[[str], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    rounds: int
    iterations: int
    traffic_checks: int
    identities: int
    memory_rounds: int


FULL: Final = Settings(
    rounds=25, iterations=400, traffic_checks=200, identities=10_000, memory_rounds=3
)
QUICK: Final = Settings(
    rounds=4, iterations=200, traffic_checks=50, identities=2_000, memory_rounds=1
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One flask-quota algorithm with ``n_limits`` stacked limits, and its peer if it has one."""

    algorithm: Algorithm
    n_limits: int

    @property
    def peer(self) -> type[RateLimiter] | None:
        return PEERS.get(self.algorithm)

    @property
    def label(self) -> str:
        return f"{self.algorithm.value}-x{self.n_limits}"

    @property
    def limit_texts(self) -> tuple[str, ...]:
        return STACK[: self.n_limits]


def scenarios() -> list[Scenario]:
    return [Scenario(algorithm=a, n_limits=n) for a in (*PEERS, *ALONE) for n in (1, 4)]


# -- contenders ------------------------------------------------------------------------------


def quota_checker(storage: QuotaStorage, algorithm: Algorithm, texts: Sequence[str]) -> Checker:
    """A flask-quota check: rules and the limits' key parts compiled once (as the extension's
    ``AppliedLimit`` holds them), keys built per request, one ``evaluate``."""
    compiled = [
        (Rule.build(algorithm, limit), limit_part(SCOPE, algorithm, limit.period_s))
        for limit in map(parse_limit, texts)
    ]

    def check(identity: str) -> bool:
        checks = [
            Check(key=state_key(KEY_PREFIX, part, identity), rule=rule) for rule, part in compiled
        ]
        return storage.evaluate(checks).allowed

    return check


def limits_checker(
    storage: LimitsStorage, strategy: type[RateLimiter], texts: Sequence[str]
) -> Checker:
    """A Flask-Limiter check: items parsed once, one ``hit(item, identity, scope)`` per limit."""
    limiter = strategy(storage)
    items = [parse_item(text) for text in texts]

    def check(identity: str) -> bool:
        return all(limiter.hit(item, identity, SCOPE) for item in items)

    return check


@dataclass(frozen=True, slots=True)
class Engines:
    """Both storages, each on its own pool built with the same settings."""

    quota: QuotaStorage
    limits: LimitsStorage

    def checkers(self, scenario: Scenario) -> dict[str, Checker]:
        texts = scenario.limit_texts
        found = {QUOTA: quota_checker(self.quota, scenario.algorithm, texts)}
        if scenario.peer is not None:
            found[LIMITS] = limits_checker(self.limits, scenario.peer, texts)
        return found


def make_pool(url: str, counter: WireCounter | None = None) -> redis.ConnectionPool:
    """redis-py's defaults; with ``counter``, connections that count what they send."""
    if counter is None:
        return redis.ConnectionPool.from_url(url)
    return redis.ConnectionPool.from_url(url, connection_class=CountingConnection, counter=counter)


def build_engines(
    url: str, quota_pool: redis.ConnectionPool, limits_pool: redis.ConnectionPool
) -> Engines:
    return Engines(
        quota=QuotaStorage(redis.Redis(connection_pool=quota_pool)),
        limits=LimitsStorage(url, connection_pool=limits_pool),
    )


def warm_up(check: Checker, identity: str) -> None:
    """Open the connection and load the scripts, so no phase counts or times either."""
    for _ in range(WARMUP_CHECKS):
        check(identity)


# -- phase 1: traffic ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Traffic:
    """Per-check averages for one contender in one scenario."""

    round_trips: float
    commands_sent: float
    bytes_sent: float
    commands_executed: float
    #: Server time in scripts: EVALSHA's own usec, which include the commands its script runs.
    script_us: float
    #: Server-side calls per check by command name (lower case), from INFO commandstats.
    executed_by_name: dict[str, float]


@dataclass(frozen=True, slots=True)
class CommandStats:
    """``INFO commandstats`` totals: calls per command, and microseconds spent in scripts."""

    calls: Counter[str]
    script_us: int

    def __sub__(self, other: CommandStats) -> CommandStats:
        return CommandStats(self.calls - other.calls, self.script_us - other.script_us)


SCRIPT_COMMANDS: Final = frozenset({"eval", "evalsha"})


def command_stats(admin: redis.Redis) -> CommandStats:
    """The server's counters so far; INFO itself (the measuring command) is left out."""
    stats = {
        name.removeprefix("cmdstat_"): fields
        for name, fields in admin.info("commandstats").items()
        if name != "cmdstat_info"
    }
    return CommandStats(
        Counter({name: int(fields["calls"]) for name, fields in stats.items()}),
        sum(int(fields["usec"]) for name, fields in stats.items() if name in SCRIPT_COMMANDS),
    )


def measure_traffic(
    check: Checker, counter: WireCounter, admin: redis.Redis, identity: str, checks: int
) -> Traffic:
    warm_up(check, identity)
    counter.reset()
    before = command_stats(admin)
    for _ in range(checks):
        if not check(identity):
            raise SystemExit(f"refused during the traffic phase ({identity}): limits too low")
    executed = command_stats(admin) - before
    return Traffic(
        round_trips=counter.round_trips / checks,
        commands_sent=counter.commands / checks,
        bytes_sent=counter.bytes_sent / checks,
        commands_executed=executed.calls.total() / checks,
        script_us=executed.script_us / checks,
        executed_by_name={name: calls / checks for name, calls in sorted(executed.calls.items())},
    )


def run_traffic(url: str, admin: redis.Redis, settings: Settings) -> dict[tuple[str, str], Traffic]:
    counters = {QUOTA: WireCounter(), LIMITS: WireCounter()}
    engines = build_engines(url, make_pool(url, counters[QUOTA]), make_pool(url, counters[LIMITS]))
    results: dict[tuple[str, str], Traffic] = {}
    for scenario in scenarios():
        for name, check in engines.checkers(scenario).items():
            identity = f"traffic-{scenario.label}-{name}"
            results[scenario.label, name] = measure_traffic(
                check, counters[name], admin, identity, settings.traffic_checks
            )
    return results


# -- phase 2: latency ------------------------------------------------------------------------


def time_block(check: Checker, identity: str, iterations: int) -> float:
    """Microseconds per check over ``iterations`` checks of one fresh identity."""
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(iterations):
        if not check(identity):
            raise SystemExit(f"refused during the latency phase ({identity}): limits too low")
    return (time.perf_counter_ns() - start) / iterations / 1000


def run_latency(url: str, settings: Settings) -> dict[tuple[str, str], list[float]]:
    """Samples per (scenario, contender): one per round; contenders alternate, order flipping."""
    engines = build_engines(url, make_pool(url), make_pool(url))
    plan = [(scenario, engines.checkers(scenario)) for scenario in scenarios()]
    for scenario, checkers in plan:
        for name, check in checkers.items():
            warm_up(check, f"warmup-{scenario.label}-{name}")
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for round_no in range(settings.rounds):
        for scenario, checkers in plan:
            order = list(checkers.items())
            if round_no % 2:
                order.reverse()
            for name, check in order:
                identity = f"bench-{scenario.label}-{name}-{round_no}"
                samples[scenario.label, name].append(
                    time_block(check, identity, settings.iterations)
                )
    return samples


# -- phase 3: memory -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Footprint:
    """Redis memory per idle identity after each identity was hit once."""

    keys_per_identity: float
    memory_usage: float
    #: The median over the memory rounds, and the lowest and highest round.
    used_memory: float
    used_memory_low: float
    used_memory_high: float
    key_length: float
    #: OBJECT ENCODING of the value of one key, e.g. ``int`` (no allocation) or ``embstr``.
    encoding: str


def ip_identities(count: int) -> list[str]:
    """``count`` distinct IPv4 addresses, as by_ip and Flask-Limiter's get_remote_address give."""
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)]


def used_memory(admin: redis.Redis) -> int:
    time.sleep(SETTLE_S)  # lets the server cron finish any incremental rehash of its dicts
    return int(admin.info("memory")["used_memory"])


def measure_footprint(check: Checker, admin: redis.Redis, identities: Sequence[str]) -> Footprint:
    warm_up(check, "warmup")
    admin.flushall(asynchronous=False)
    before = used_memory(admin)
    for identity in identities:
        if not check(identity):
            raise SystemExit(f"refused during the memory phase ({identity})")
    after = used_memory(admin)
    keys = list(admin.scan_iter(count=1000))
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    sizes = pipe.execute()
    count = len(identities)
    return Footprint(
        keys_per_identity=len(keys) / count,
        memory_usage=sum(sizes) / count,
        used_memory=(after - before) / count,
        used_memory_low=(after - before) / count,
        used_memory_high=(after - before) / count,
        key_length=sum(map(len, keys)) / len(keys),
        encoding=admin.object("encoding", keys[0]).decode(),
    )


def run_memory(
    url: str, admin: redis.Redis, settings: Settings
) -> dict[tuple[str, str], Footprint]:
    """Footprints per (algorithm, contender): medians over ``memory_rounds`` rounds, in which
    the contenders of an algorithm alternate which goes first."""
    engines = build_engines(url, make_pool(url), make_pool(url))
    identities = ip_identities(settings.identities)
    checkers: dict[tuple[str, str], Checker] = {}
    for algorithm in Algorithm:
        checkers[algorithm.value, QUOTA] = quota_checker(engines.quota, algorithm, (MEMORY_LIMIT,))
        peer = PEERS.get(algorithm)
        if peer is not None:
            checkers[algorithm.value, LIMITS] = limits_checker(
                engines.limits, peer, (MEMORY_LIMIT,)
            )
    # The server's first fill after it starts reads 2-5 B per identity higher than later ones,
    # whoever makes it: one fill is made and discarded first.
    measure_footprint(next(iter(checkers.values())), admin, identities)
    samples: dict[tuple[str, str], list[Footprint]] = defaultdict(list)
    for round_no in range(settings.memory_rounds):
        for algorithm in Algorithm:
            names = [name for name in (QUOTA, LIMITS) if (algorithm.value, name) in checkers]
            if round_no % 2:
                names.reverse()
            for name in names:
                found = measure_footprint(checkers[algorithm.value, name], admin, identities)
                samples[algorithm.value, name].append(found)
    admin.flushall()
    return {key: median_footprint(found) for key, found in samples.items()}


def median_footprint(rounds: Sequence[Footprint]) -> Footprint:
    """One footprint from several rounds: medians, and the used_memory range."""
    used = [found.used_memory for found in rounds]
    return Footprint(
        keys_per_identity=rounds[0].keys_per_identity,
        memory_usage=statistics.median(found.memory_usage for found in rounds),
        used_memory=statistics.median(used),
        used_memory_low=min(used),
        used_memory_high=max(used),
        key_length=rounds[0].key_length,
        encoding=rounds[0].encoding,
    )


# -- report ----------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    names = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")
    ]
    return names[0] if names else "unknown"


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def measured_revision() -> str:
    """The commit of the flask_quota actually imported, and whether its code differs from it."""
    checkout = Path(flask_quota.__file__).resolve().parent.parent
    head = git(checkout, "rev-parse", "--short", "HEAD")
    if not head:
        return f"{checkout} (not a git checkout)"
    dirty = git(checkout, "status", "--porcelain", "--", "flask_quota", "lua")
    return f"git {head}" + (" + uncommitted changes in flask_quota/ or lua/" if dirty else "")


def setup_lines(admin: redis.Redis, settings: Settings, command: str) -> list[str]:
    server = admin.info("server")
    memory = admin.info("memory")
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("flask-quota", "limits", "Flask-Limiter", "redis")
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- command: `{command}`",
        f"- Redis {server['redis_version']} ({memory['mem_allocator']}), private server on"
        " 127.0.0.1, `--save '' --appendonly no`, loopback TCP, redis-py default pools",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {versions};"
        f" {measured_revision()}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start: {load}",
        f"- latency: {settings.rounds} rounds x {settings.iterations} checks per block, one block"
        " per contender per scenario per round; traffic: "
        f"{settings.traffic_checks} checks; memory: {settings.identities} identities,"
        f" {settings.memory_rounds} rounds",
        f"- limits stacked: {', '.join(STACK)} (1 limit: the first); memory: {MEMORY_LIMIT}",
    ]


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def paired_ratio(quota: Sequence[float], peer: Sequence[float]) -> float:
    """Median over rounds of flask-quota / limits, each round's pair measured back to back."""
    return statistics.median(q / p for q, p in zip(quota, peer, strict=True))


def peer_name(algorithm: Algorithm) -> str:
    peer = PEERS.get(algorithm)
    return peer.__name__ if peer is not None else "-"


def latency_lines(samples: dict[tuple[str, str], list[float]]) -> list[str]:
    rows = []
    for scenario in scenarios():
        quota = samples[scenario.label, QUOTA]
        peer = samples.get((scenario.label, LIMITS))
        rows.append(
            [
                scenario.algorithm.value,
                peer_name(scenario.algorithm),
                str(scenario.n_limits),
                spread(quota),
                spread(peer) if peer else "-",
                f"{paired_ratio(quota, peer):.2f}" if peer else "-",
            ]
        )
    headers = ["flask-quota", "limits", "limits/check", "flask-quota us", "limits us", "ratio"]
    return markdown_table(headers, rows)


def breakdown(by_name: dict[str, float]) -> str:
    return ", ".join(f"{name} {calls:g}" for name, calls in by_name.items())


def traffic_lines(traffic: dict[tuple[str, str], Traffic]) -> list[str]:
    rows = []
    for scenario in scenarios():
        for name in (QUOTA, LIMITS):
            found = traffic.get((scenario.label, name))
            if found is None:
                continue
            contender = scenario.algorithm.value if name == QUOTA else peer_name(scenario.algorithm)
            rows.append(
                [
                    f"{name}: {contender}",
                    str(scenario.n_limits),
                    f"{found.round_trips:g}",
                    f"{found.commands_sent:g}",
                    f"{found.commands_executed:g}",
                    f"{found.bytes_sent:.0f}",
                    f"{found.script_us:.1f}",
                    breakdown(found.executed_by_name),
                ]
            )
    headers = [
        "contender",
        "limits/check",
        "round trips",
        "commands sent",
        "commands executed",
        "bytes sent",
        "server us",
        "executed by the server",
    ]
    return markdown_table(headers, rows)


def memory_lines(memory: dict[tuple[str, str], Footprint]) -> list[str]:
    rows = []
    for algorithm in Algorithm:
        peer = memory.get((algorithm.value, LIMITS))
        for name in (QUOTA, LIMITS):
            found = memory.get((algorithm.value, name))
            if found is None:
                continue
            contender = algorithm.value if name == QUOTA else peer_name(algorithm)
            ratios = ("-", "-")
            if name == QUOTA and peer is not None:
                ratios = (
                    f"{found.memory_usage / peer.memory_usage:.2f}",
                    f"{found.used_memory / peer.used_memory:.2f}",
                )
            rows.append(
                [
                    f"{name}: {contender}",
                    f"{found.keys_per_identity:g}",
                    f"{found.key_length:.1f}",
                    found.encoding,
                    f"{found.memory_usage:.1f}",
                    f"{found.used_memory:.1f} [{found.used_memory_low:.1f}-"
                    f"{found.used_memory_high:.1f}]",
                    *ratios,
                ]
            )
    headers = [
        "contender",
        "keys/identity",
        "key bytes",
        "value encoding",
        "MEMORY USAGE B/identity",
        "used_memory delta B/identity, median [min-max]",
        "ratio (MEMORY USAGE)",
        "ratio (used_memory)",
    ]
    return markdown_table(headers, rows)


def memory_verdict(mine: Footprint, theirs: Footprint) -> str:
    """MEMORY USAGE is exact per key; used_memory moves between rounds by a few bytes per
    identity for the same keys (allocations beside them: buffers, dict tables). A median above
    the peer's by less than the rounds' spread is equal, said so; beyond it, missed."""
    if mine.memory_usage > theirs.memory_usage:
        return verdict(False)
    if mine.used_memory <= theirs.used_memory:
        return verdict(True)
    spread = max(
        mine.used_memory_high - mine.used_memory_low,
        theirs.used_memory_high - theirs.used_memory_low,
    )
    excess = mine.used_memory - theirs.used_memory
    if excess <= spread:
        return f"met (used_memory +{excess:.1f} B, within the rounds' spread of {spread:.1f} B)"
    return verdict(False)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def target_lines(
    traffic: dict[tuple[str, str], Traffic],
    samples: dict[tuple[str, str], list[float]],
    memory: dict[tuple[str, str], Footprint],
) -> list[str]:
    lines = []
    for algorithm in PEERS:
        label = Scenario(algorithm=algorithm, n_limits=len(STACK)).label
        trips = traffic[label, QUOTA].round_trips
        peer_trips = traffic[label, LIMITS].round_trips
        ratio = paired_ratio(samples[label, QUOTA], samples[label, LIMITS])
        mine, theirs = memory[algorithm.value, QUOTA], memory[algorithm.value, LIMITS]
        lines += [
            f"- {algorithm.value}, {len(STACK)} limits: round trips {trips:g} vs {peer_trips:g}"
            f" -> {verdict(trips == 1 and peer_trips >= len(STACK))};"
            f" time ratio {ratio:.2f} (target <= 0.33) -> {verdict(ratio <= 1 / 3)};"
            f" memory {mine.memory_usage:.0f} vs {theirs.memory_usage:.0f} B (MEMORY USAGE),"
            f" {mine.used_memory:.1f} vs {theirs.used_memory:.1f} B (used_memory, medians)"
            f" -> {memory_verdict(mine, theirs)}",
        ]
    return lines


def report(
    setup: list[str],
    traffic: dict[tuple[str, str], Traffic],
    samples: dict[tuple[str, str], list[float]],
    memory: dict[tuple[str, str], Footprint],
) -> str:
    sections = [
        ["## Setup", "", *setup],
        [
            "## Latency: microseconds per check, median [min-max] over rounds",
            "",
            "ratio = median over rounds of flask-quota / limits (lower is better for flask-quota)",
            "",
            *latency_lines(samples),
        ],
        ["## Traffic per check", "", *traffic_lines(traffic)],
        [
            "## Redis memory per idle identity (one key set per identity, hit once)",
            "",
            *memory_lines(memory),
        ],
        ["## Targets", "", *target_lines(traffic, samples, memory)],
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def parse_args(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds and keys")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 25; quick 4)")
    parser.add_argument("--iterations", type=int, help="checks per latency block (default 400)")
    parser.add_argument("--identities", type=int, help="identities in the memory phase (10000)")
    parser.add_argument("--memory-rounds", type=int, help="memory rounds (default 3; quick 1)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    return Settings(
        rounds=args.rounds or base.rounds,
        iterations=args.iterations or base.iterations,
        traffic_checks=base.traffic_checks,
        identities=args.identities or base.identities,
        memory_rounds=args.memory_rounds or base.memory_rounds,
    )


def main(argv: Sequence[str]) -> int:
    settings = parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/bench_core.py", *argv])
    started = time.monotonic()
    with PrivateRedis() as server:
        admin = redis.Redis.from_url(server.url)
        setup = setup_lines(admin, settings, command)
        traffic = run_traffic(server.url, admin, settings)
        samples = run_latency(server.url, settings)
        memory = run_memory(server.url, admin, settings)
        admin.close()
    setup.append(f"- wall time: {time.monotonic() - started:.0f} s")
    sys.stdout.write(report(setup, traffic, samples, memory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
