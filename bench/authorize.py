"""Authorization endpoint throughput and latency against a no-op RPC served the same way.

    .venv/bin/python bench/authorize.py [--seconds 3] [--rounds 5] [--procs 4] [--threads 4]
                                        [--client threads|aio] [--alg RS256] [--json FILE]

What it does, in one run:

1. starts a real ``agentceiling serve`` subprocess (SQLite in a temporary data directory, audit log
   on and durable: every decision is fdatasync'd before the answer, group-committed);
2. serves a JWKS document from this process (an in-process IdP on loopback) and sets up, through the
   control plane, a profile, a ceiling policy, an access policy, an entity, its alias and its agent
   registration;
3. pre-mints distinct tokens (each a different ``jti``, so each is validated from scratch: JSON,
   signature, claims) in a process pool;
4. measures, with the *same* client harness (``--procs`` spawned processes, each with one channel
   and ``--threads`` calls in flight -- blocking calls in threads, or grpc.aio coroutines -- closed
   loop on loopback), three workloads on the authorization listener:

   * ``noop``      -- ``grpc.health.v1.Health/Check``: a unary RPC that does nothing, same server,
                      same listener, same event loop;
   * ``fresh``     -- ``Authorize`` with a token never seen before (each call its own token);
   * ``repeated``  -- ``Authorize`` with one token over and over (the agent's steady state);

   in pairs: each Authorize phase right after a no-op phase of its own (``--seconds`` each, after
   ``--warmup``), ``--rounds`` times. The machine is shared with other work, so absolute numbers
   drift by tens of percent within a minute; a pair sees the same conditions, and the report gives
   medians of the per-pair ratios;
5. prints throughput (calls/s), p50 and p99 latency, the server's CPU time per call (user and
   system, from /proc/<pid>/stat) and its threads' context switches per call, the CPU time of its
   authorization worker process per call (``wrk``: it decides and audits; the ``noop/srv CPU``
   ratio counts both processes), the
   client's CPU time per call, the whole machine's busy CPU time per call with its idle and steal
   shares (from /proc/stat: it also counts the kernel's work for each ``fdatasync``, which no
   process is charged for), the ratios against the no-op, and checks the targets: Authorize
   throughput >= 60% of the no-op's, p99 <= 2x the no-op's.

Every call of the Authorize phases must come back ALLOWED (anything else aborts the run), and the
audit log's hash chain is verified at the end.
Exit status: 0 when the targets are met, 1 when not, 2 on a set-up failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from agentceiling.dev_idp import ALG_KIND, DevIdp
from agentceiling.dev_ports import free_port

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "agentceiling"
PATH = "secret/data/bench/app"
CEILING = 'path "secret/data/bench/*" {\n  capabilities = ["read", "list"]\n}\n'
ACCESS = 'path "secret/data/*" {\n  capabilities = ["create", "read", "update", "delete", "list"]\n}\n'


# ------------------------------------------------------------------ helpers


def _wait_healthy(address: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with grpc.insecure_channel(address) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy")


# ------------------------------------------------------------------ minting (pool workers)

_MINT: dict[str, Any] = {}


def _mint_init(key_pem: bytes, alg: str, kid: str, issuer: str) -> None:
    from cryptography.hazmat.primitives import serialization

    _MINT.update(key=serialization.load_pem_private_key(key_pem, None), alg=alg, kid=kid, issuer=issuer)


def _mint(args: tuple[str, int, int]) -> list[str]:
    import jwt

    sub, count, lifetime = args
    now = int(time.time())
    details = [{"type": "vault:path_access", "path": PATH, "capabilities": ["read"]}]
    out = []
    for _ in range(count):
        claims = {
            "iss": _MINT["issuer"],
            "sub": sub,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "authorization_details": details,
        }
        out.append(
            jwt.encode(claims, _MINT["key"], algorithm=_MINT["alg"], headers={"kid": _MINT["kid"], "typ": "at+jwt"})
        )
    return out


# ------------------------------------------------------------------ the client harness (pool workers)


def _client(args: tuple[str, str, list[str], int, float, float, float]) -> dict[str, Any]:
    """One client process: ``threads`` threads on one channel, closed loop.

    Calls issued before ``start`` are warm-up; calls completing between ``start`` and ``stop``
    (absolute ``time.time()`` values shared by every process) are measured."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
    from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg

    address, kind, tokens, threads, warm_until, start, stop = args
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    lock = threading.Lock()
    cursor = [0]
    results: list[list[int]] = [[] for _ in range(threads)]
    failures: list[str] = []
    exhausted = [False]

    if kind == "noop":
        check = health_pb2_grpc.HealthStub(channel).Check
        noop_req = health_pb2.HealthCheckRequest(service="agentceiling.v1.Authorization")

        def call() -> None:
            check(noop_req, timeout=30)

    else:
        authorize = pbg.AuthorizationStub(channel).Authorize
        if kind == "repeated":
            repeated_req = pb.AuthorizeRequest(token=tokens[0], path=PATH, operation="read")

            def next_request() -> pb.AuthorizeRequest | None:
                return repeated_req

        else:

            def next_request() -> pb.AuthorizeRequest | None:
                with lock:
                    i = cursor[0]
                    cursor[0] = i + 1
                if i >= len(tokens):
                    exhausted[0] = True
                    return None
                return pb.AuthorizeRequest(token=tokens[i], path=PATH, operation="read")

        def call() -> None:
            req = next_request()
            if req is None:
                raise StopIteration
            resp = authorize(req, timeout=30)
            if resp.code != "ALLOWED":
                raise RuntimeError(f"{resp.code}: {resp.reason}")

    def loop(slot: list[int]) -> None:
        perf = time.perf_counter_ns
        clock = time.time
        try:
            while True:
                now = clock()
                if now >= stop:
                    return
                t0 = perf()
                call()
                t1 = perf()
                done = clock()
                if start <= done < stop and now >= warm_until:
                    slot.append(t1 - t0)
        except StopIteration:
            return
        except Exception as exc:
            with lock:
                failures.append(repr(exc)[:300])

    while time.time() < warm_until - 0.5:  # processes start at different moments: line up
        time.sleep(0.01)
    cpu = _CpuWindow(start, stop)
    workers = [threading.Thread(target=loop, args=(results[i],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    channel.close()
    return {
        "latencies": [x for r in results for x in r],
        "failures": failures,
        "exhausted": exhausted[0],
        "cpu": cpu.seconds(),
    }


class _CpuWindow:
    """This process's CPU time between two absolute times (sampled by a sleeping thread)."""

    def __init__(self, start: float, stop: float) -> None:
        self._marks: list[float] = []
        self._thread = threading.Thread(target=self._run, args=(start, stop), daemon=True)
        self._thread.start()

    def _run(self, start: float, stop: float) -> None:
        for t in (start, stop):
            time.sleep(max(0.0, t - time.time()))
            self._marks.append(time.process_time())

    def seconds(self) -> float:
        self._thread.join(timeout=5)
        return self._marks[1] - self._marks[0] if len(self._marks) == 2 else float("nan")


def _client_aio(args: tuple[str, str, list[str], int, float, float, float]) -> dict[str, Any]:
    """One client process: ``threads`` concurrent calls on one grpc.aio channel, closed loop."""
    import asyncio

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
    from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg

    address, kind, tokens, threads, warm_until, start, stop = args
    results: list[list[int]] = [[] for _ in range(threads)]
    failures: list[str] = []
    exhausted = [False]

    async def run() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)
            check = health_pb2_grpc.HealthStub(channel).Check
            authorize = pbg.AuthorizationStub(channel).Authorize
            noop_req = health_pb2.HealthCheckRequest(service="agentceiling.v1.Authorization")
            repeated_req = pb.AuthorizeRequest(token=tokens[0], path=PATH, operation="read")
            it = iter(tokens)

            async def call() -> bool:
                if kind == "noop":
                    await check(noop_req, timeout=30)
                    return True
                if kind == "repeated":
                    req = repeated_req
                else:
                    tok = next(it, None)
                    if tok is None:
                        exhausted[0] = True
                        return False
                    req = pb.AuthorizeRequest(token=tok, path=PATH, operation="read")
                resp = await authorize(req, timeout=30)
                if resp.code != "ALLOWED":
                    raise RuntimeError(f"{resp.code}: {resp.reason}")
                return True

            async def loop(slot: list[int]) -> None:
                perf = time.perf_counter_ns
                clock = time.time
                try:
                    while True:
                        now = clock()
                        if now >= stop:
                            return
                        t0 = perf()
                        if not await call():
                            return
                        t1 = perf()
                        done = clock()
                        if start <= done < stop and now >= warm_until:
                            slot.append(t1 - t0)
                except Exception as exc:
                    failures.append(repr(exc)[:300])

            await asyncio.sleep(max(0.0, warm_until - 0.5 - time.time()))
            await asyncio.gather(*(loop(results[i]) for i in range(threads)))

    cpu = _CpuWindow(start, stop)
    asyncio.run(run())
    return {
        "latencies": [x for r in results for x in r],
        "failures": failures,
        "exhausted": exhausted[0],
        "cpu": cpu.seconds(),
    }


# ------------------------------------------------------------------ orchestration


def _setup(address: str, token: str, idp: DevIdp, alg: str) -> str:
    from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
    from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

    md = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(address) as ch:
        pbg.OAuthResourceServerProfilesStub(ch).Create(
            pb.CreateProfileRequest(
                profile=pb.OAuthResourceServerProfile(
                    profile_name="bench-idp",
                    issuer_id=idp.issuer,
                    jwks_uri=idp.jwks_uri,
                    audiences=[AUDIENCE],
                    supported_algorithms=[alg],
                )
            ),
            metadata=md,
        )
        pol = pbg.PoliciesStub(ch)
        pol.Create(pb.CreatePolicyRequest(policy=pb.Policy(name="bench-ceiling", policy=CEILING)), metadata=md)
        pol.Create(pb.CreatePolicyRequest(policy=pb.Policy(name="bench-access", policy=ACCESS)), metadata=md)
        ent = (
            pbg.IdentityEntitiesStub(ch)
            .Create(
                pb.CreateEntityRequest(entity=pb.IdentityEntity(name="bench-agent", policies=["bench-access"])),
                metadata=md,
            )
            .entity
        )
        pbg.EntityAliasesStub(ch).Create(
            pb.CreateAliasRequest(
                alias=pb.EntityAlias(
                    name="bench-agent", canonical_id=ent.id, issuer=idp.issuer, external_id="bench-agent"
                )
            ),
            metadata=md,
        )
        pbg.AgentRegistrationsStub(ch).Create(
            pb.CreateRegistrationRequest(
                registration=pb.AgentRegistration(
                    display_name="bench-agent", entity_id=ent.id, ceiling_policies=["bench-ceiling"]
                )
            ),
            metadata=md,
        )
    return "bench-agent"


def _cpu_seconds(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def _children(pid: int) -> list[int]:
    """The server's child processes: its authorization worker (api/authz_worker.py)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def _server_counters(pid: int) -> tuple[float, float, int, float]:
    """(user CPU s, system CPU s, context switches) of a process so far, and the CPU seconds of its
    child processes (the authorization worker), from Linux /proc; zeros where unavailable. Switches
    (voluntary + involuntary, summed over its threads) show how often the server's threads block
    and wake: on a small VM each costs scheduler time and a GIL hand-off (docs/performance.md,
    "context switches")."""
    try:
        user, system = _cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0, 0.0
    children = 0.0
    for kid in _children(pid):
        try:
            children += sum(_cpu_seconds(kid))
        except (OSError, ValueError, IndexError):
            continue
    switches = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between listdir and open
    return user, system, switches, children


def _machine_jiffies() -> tuple[int, int, int]:
    """(busy, idle, steal) clock ticks of all CPUs so far, from Linux /proc/stat; zeros elsewhere.
    Busy counts user, nice, system, irq and softirq time: every process's, and the kernel's own
    threads' (the journal commits and block-device work that each ``fdatasync`` causes, which no
    process's /proc/<pid>/stat shows)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0, 0
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, idle + iowait, steal


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[i] / 1e6


def _phase(
    pool: Any,
    address: str,
    kind: str,
    tokens: list[str],
    procs: int,
    threads: int,
    seconds: float,
    warmup: float,
    server_pid: int = 0,
    client: str = "threads",
) -> dict[str, Any]:
    t0 = time.time() + 0.5  # give every process time to connect
    warm_until = t0 + warmup
    stop = warm_until + seconds
    per = len(tokens) // procs if kind == "fresh" else 0
    jobs = []
    for i in range(procs):
        share = tokens[i * per : (i + 1) * per] if kind == "fresh" else tokens[:1]
        jobs.append((address, kind, share, threads, t0, warm_until, stop))
    pending = pool.map_async(_client_aio if client == "aio" else _client, jobs)
    before = after = (0.0, 0.0, 0, 0.0)
    m_before = m_after = (0, 0, 0)
    if server_pid:
        time.sleep(max(0.0, warm_until - time.time()))
        before, m_before = _server_counters(server_pid), _machine_jiffies()
        time.sleep(max(0.0, stop - time.time()))
        after, m_after = _server_counters(server_pid), _machine_jiffies()
    user, system, switches, writer = (a - b for a, b in zip(after, before, strict=True))
    busy, idle, steal = (a - b for a, b in zip(m_after, m_before, strict=True))
    ticks = (busy + idle + steal) or 1
    tck = os.sysconf("SC_CLK_TCK")
    outs = pending.get()
    failures = [f for o in outs for f in o["failures"]]
    if failures:
        raise RuntimeError(f"{kind}: {len(failures)} failed calls, e.g. {failures[0]}")
    if any(o["exhausted"] for o in outs):
        raise RuntimeError(f"{kind}: ran out of pre-minted tokens; raise --tokens")
    lat = sorted(x for o in outs for x in o["latencies"])
    return {
        "calls": len(lat),
        "throughput": len(lat) / seconds,
        "p50_ms": _percentile(lat, 0.50),
        "p99_ms": _percentile(lat, 0.99),
        "mean_ms": (sum(lat) / len(lat) / 1e6) if lat else float("nan"),
        "server_cpu_us_per_call": (user + system) / len(lat) * 1e6 if lat and server_pid else float("nan"),
        "server_user_us_per_call": user / len(lat) * 1e6 if lat and server_pid else float("nan"),
        "server_system_us_per_call": system / len(lat) * 1e6 if lat and server_pid else float("nan"),
        "server_switches_per_call": switches / len(lat) if lat and server_pid else float("nan"),
        "server_cpu_share": (user + system) / seconds if server_pid else float("nan"),
        "writer_cpu_us_per_call": writer / len(lat) * 1e6 if lat and server_pid else float("nan"),
        "client_cpu_us_per_call": sum(o["cpu"] for o in outs) / len(lat) * 1e6 if lat else float("nan"),
        "machine_busy_us_per_call": busy / tck / len(lat) * 1e6 if lat and server_pid else float("nan"),
        "machine_idle_share": idle / ticks if server_pid else float("nan"),
        "machine_steal_share": steal / ticks if server_pid else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each phase")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of (noop, fresh) and (noop, repeated) pairs")
    ap.add_argument("--procs", type=int, default=4, help="client processes")
    ap.add_argument("--threads", type=int, default=4, help="calls in flight per client process")
    ap.add_argument(
        "--client",
        choices=("aio", "threads"),
        default="threads",
        help="client harness: grpc.aio coroutines (cheaper per call) or blocking calls in threads",
    )
    ap.add_argument("--alg", default="RS256", help="signing algorithm of the IdP: RS256, PS256, ES256, EdDSA")
    ap.add_argument("--tokens", type=int, default=0, help="fresh tokens to pre-mint (default: from a probe)")
    ap.add_argument("--workloads", default="noop,fresh,repeated", help="comma-separated subset of noop,fresh,repeated")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args()

    kinds = [k for k in ("noop", "fresh", "repeated") if k in args.workloads.split(",")]
    if "noop" not in kinds:
        kinds.insert(0, "noop")  # the ratios need it
    ctx = mp.get_context("spawn")
    work = Path(tempfile.mkdtemp(prefix="ac-bench-"))
    data = work / "data"
    address = f"127.0.0.1:{free_port()}"
    authz = f"127.0.0.1:{free_port()}"
    log_path = work / "server.log"
    if args.alg not in ALG_KIND:
        print(f"unsupported --alg {args.alg}; one of {', '.join(ALG_KIND)}", file=sys.stderr)
        return 2
    kind = ALG_KIND[args.alg]
    idp = DevIdp(kinds=(kind,), kid_prefix="bench")
    cmd = [sys.executable, "-m", "agentceiling.cli", "--log-level", "WARNING", "serve", "--data-dir", str(data)]
    cmd += ["--listen", address, "--authz-listen", authz]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    results: dict[str, Any] = {}
    try:
        try:
            _wait_healthy(address, proc)
            _wait_healthy(authz, proc)
            sub = _setup(address, (data / "admin-token").read_text().strip(), idp, args.alg)
        except Exception as exc:
            print(f"set-up failed: {exc}\n{log_path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 2
        n_clients = args.procs * args.threads
        mint_args = (idp.private_pem(kind), args.alg, idp.kids[kind], idp.issuer)
        mint_procs = min(os.cpu_count() or 2, 8)
        with ctx.Pool(1, _mint_init, mint_args) as mint:
            probe = mint.map(_mint, [(sub, 1, 3600)])[0]
        with ctx.Pool(args.procs) as pool:
            minted: list[list[str]] = [[] for _ in range(args.rounds)]
            if "fresh" in kinds:
                # Each fresh token is used once: size the supply from a short probe of the rate.
                n_tokens = args.tokens
                if not n_tokens:
                    with ctx.Pool(mint_procs, _mint_init, mint_args) as mint:
                        sample = [t for chunk in mint.map(_mint, [(sub, 500, 3600)] * 4) for t in chunk]
                    probe_res = _phase(pool, authz, "fresh", sample, args.procs, args.threads, 0.5, 0.2, 0, args.client)
                    rate = probe_res["throughput"]
                    n_tokens = int(rate * (args.seconds + args.warmup + 1.5) * 1.5) + 200 * n_clients
                t = time.time()
                with ctx.Pool(mint_procs, _mint_init, mint_args) as mint:
                    batches = [(sub, 500, 3600)] * (n_tokens // 500 + 1)
                    minted = [[t for b in mint.map(_mint, batches) for t in b] for _ in range(args.rounds)]
                print(
                    f"minted {args.rounds} x {len(minted[0])} {args.alg} tokens in {time.time() - t:.1f} s", flush=True
                )
            # Paired phases: every Authorize phase right after a no-op phase of its own, so that
            # both see the same machine (others' load varies by tens of percent within a minute).
            pairs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds if k != "noop"}
            for r in range(args.rounds):
                for kind in pairs:
                    pair = {}
                    for phase in ("noop", kind):
                        toks = minted[r] if phase == "fresh" else probe
                        pair[phase] = res = _phase(
                            pool,
                            authz,
                            phase,
                            toks,
                            args.procs,
                            args.threads,
                            args.seconds,
                            args.warmup,
                            proc.pid,
                            args.client,
                        )
                        print(
                            f"round {r + 1} {phase:9s} {res['throughput']:8.0f} calls/s  p50 {res['p50_ms']:6.2f} ms  "
                            f"p99 {res['p99_ms']:6.2f} ms  server CPU {res['server_cpu_us_per_call']:5.0f} us/call "
                            f"({res['server_cpu_share']:.2f} cores; user {res['server_user_us_per_call']:.0f}, "
                            f"system {res['server_system_us_per_call']:.0f}; "
                            f"{res['server_switches_per_call']:.1f} switches/call)  "
                            f"worker {res['writer_cpu_us_per_call']:4.0f} us/call  "
                            f"client {res['client_cpu_us_per_call']:4.0f} us/call  "
                            f"machine {res['machine_busy_us_per_call']:5.0f} us/call "
                            f"(idle {res['machine_idle_share']:.0%}, steal {res['machine_steal_share']:.0%})",
                            flush=True,
                        )
                    pair["throughput_ratio"] = pair[kind]["throughput"] / pair["noop"]["throughput"]
                    pair["p99_ratio"] = pair[kind]["p99_ms"] / pair["noop"]["p99_ms"]
                    # Serving costs the server process and its authorization worker process.
                    pair["server_cpu_ratio"] = (
                        pair["noop"]["server_cpu_us_per_call"] + pair["noop"]["writer_cpu_us_per_call"]
                    ) / (pair[kind]["server_cpu_us_per_call"] + pair[kind]["writer_cpu_us_per_call"])
                    pairs[kind].append(pair)
        med = statistics.median
        for kind, ps in pairs.items():
            results[kind] = {
                "throughput_ratio": med(p["throughput_ratio"] for p in ps),
                "p99_ratio": med(p["p99_ratio"] for p in ps),
                "server_cpu_ratio": med(p["server_cpu_ratio"] for p in ps),
                "throughput": med(p[kind]["throughput"] for p in ps),
                "p50_ms": med(p[kind]["p50_ms"] for p in ps),
                "p99_ms": med(p[kind]["p99_ms"] for p in ps),
                "server_cpu_us_per_call": med(p[kind]["server_cpu_us_per_call"] for p in ps),
                "server_switches_per_call": med(p[kind]["server_switches_per_call"] for p in ps),
                "writer_cpu_us_per_call": med(p[kind]["writer_cpu_us_per_call"] for p in ps),
                "machine_busy_us_per_call": med(p[kind]["machine_busy_us_per_call"] for p in ps),
                "pairs": ps,
            }
        noops = [p["noop"] for ps in pairs.values() for p in ps]
        results["noop"] = {
            "throughput": med(n["throughput"] for n in noops),
            "p50_ms": med(n["p50_ms"] for n in noops),
            "p99_ms": med(n["p99_ms"] for n in noops),
            "server_cpu_us_per_call": med(n["server_cpu_us_per_call"] for n in noops),
            "server_switches_per_call": med(n["server_switches_per_call"] for n in noops),
            "writer_cpu_us_per_call": med(n["writer_cpu_us_per_call"] for n in noops),
            "machine_busy_us_per_call": med(n["machine_busy_us_per_call"] for n in noops),
            "throughput_ratio": 1.0,
            "p99_ratio": 1.0,
            "server_cpu_ratio": 1.0,
        }
        audit_file = data / "audit" / "audit.log"
        from agentceiling.store import audit_log

        verified = audit_log.verify(audit_file)
        results["audit_records"] = verified.records
        results["audit_ok"] = verified.ok
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        idp.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    ok = True
    print()
    print(f"machine: {os.cpu_count()} CPUs; client: {args.procs} processes x {args.threads} threads; alg {args.alg}")
    print(f"audit log: {results['audit_records']} records, chain {'intact' if results['audit_ok'] else 'BROKEN'}")
    print(f"medians over {args.rounds} rounds; ratios are per round against the no-op phase just before")
    head = f"{'workload':10s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'srv us/call':>12s} {'srv sw/call':>12s}"
    head += f" {'wrk us/call':>12s} {'mach us/call':>13s}"
    print(f"{head} {'tput/noop':>10s} {'p99/noop':>9s} {'noop/srv CPU':>13s}")
    for kind in kinds:
        r = results[kind]
        print(
            f"{kind:10s} {r['throughput']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['server_cpu_us_per_call']:12.0f} {r['server_switches_per_call']:12.1f} "
            f"{r['writer_cpu_us_per_call']:12.0f} {r['machine_busy_us_per_call']:13.0f} "
            f"{r['throughput_ratio']:10.2f} {r['p99_ratio']:9.2f} "
            f"{r['server_cpu_ratio']:13.2f}"
        )
        if kind != "noop" and (r["throughput_ratio"] < 0.60 or r["p99_ratio"] > 2.0):
            ok = False
    print(f"targets (throughput >= 0.60 x noop, p99 <= 2.0 x noop): {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **results}, indent=2))
    return 0 if ok and results["audit_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
