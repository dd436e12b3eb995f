"""The ad service under load (``serving/service.py`` over HTTP, tiny models); prints one JSON object.

Starts the real service the way the serving tests do (``bentoml serve serving.service:AdService`` on 127.0.0.1,
a free port, its own temp dir with a SQLite MLflow registry holding a tiny LoRA as ``fitad-test`` v1 approved,
API keys, params.yaml), and stops it (SIGTERM, then SIGKILL to its process group) at the end. Loopback only.

* **cold_start**: seconds from the process start to ``/readyz`` 200 (base model and approved LoRA loaded).
* **txt2img**: ``POST /txt2img`` (pro key, so the free quota does not interfere; ``--format``, ``--steps``)
  at concurrency 1 and 4: p50/p95 latency (ms) and requests/s, after a warm-up.
* **lora_swap** (in-process): ``fitad.generate.renderer.Renderer`` with two tiny LoRAs: switching the adapter
  between renders (the ``swap_seconds`` each render reports) against constructing a new Renderer and loading
  the base + LoRA. Target: the swap is >= 20x faster.
* **http_overhead**: the same request (same format, steps, seed) through ``AdServiceCore.txt2img`` in this
  process (the core the service wraps, same params.yaml and registry) and over HTTP at concurrency 1, in
  alternating pairs so both see the same machine load; also the client latency minus the ``service_total`` the
  server measured for the same request. Target: <= 10 %.
* **load**: ``--requests`` requests at ``--concurrency`` (default 200 at 8): the count of each status (only
  2xx and 429 expected: one render at a time, ``serve.max_queue`` waiting, the rest refused with Retry-After),
  0 5xx, the service still ready after, and the RSS (sum of VmRSS) of the server's process tree (arbiter
  and worker) before/after.

GPU timings (SD1.5-size latency and VRAM) are not measured here: see ``benchmarks/ads.py --full-size``.

    python benchmarks/serve.py                       # about 2-4 minutes on 2 CPU cores
    python benchmarks/serve.py --requests 200 --concurrency 8 --steps 4
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

TARGET_SWAP_SPEEDUP = 20.0
TARGET_HTTP_OVERHEAD = 0.10
PROMPT = "a cup of coffee on a wooden table"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``, in ms rounded to 0.1."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return round(ordered[index] * 1000, 1)


def summary(latencies: list[float], wall: float) -> dict[str, Any]:
    return {"n": len(latencies), "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1), "rps": round(len(latencies) / wall, 2),
            "wall_s": round(wall, 2)}


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                table[int(entry.name)] = (int(fields[1]), int(fields[2]))
            except (OSError, ValueError, IndexError):
                continue
    return table


def server_tree(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants (BentoML's worker runs in a session of its own, so the arbiter's
    process group alone misses it)."""
    table, tree = _proc_table(), [root_pid]
    for pid in tree:
        tree.extend(child for child, (parent, _group) in table.items() if parent == pid)
    return [pid for pid in tree if pid in table]


def tree_rss_mb(root_pid: int) -> dict[str, Any]:
    """Sum of VmRSS over the server's process tree (shared pages counted once per process), and per process."""
    per = {}
    for pid in server_tree(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    per[pid] = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return {"rss_mb": round(sum(per.values()), 1), "processes": len(per), "per_process_mb": list(per.values())}


def stop_server(server: Any) -> None:
    """SIGTERM/SIGKILL the arbiter's process group (``Server.stop``), then the groups of any worker left."""
    groups = {group for pid, (_p, group) in _proc_table().items() if pid in set(server_tree(server.proc.pid))}
    server.stop()
    for group in groups - {server.proc.pid}:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------- in-process parts

def bench_swap(models_root: Path, tmp: Path, steps: int, swaps: int, reloads: int) -> dict[str, Any]:
    """Adapter switch between renders vs a new Renderer + base + LoRA load (tiny-sd15, two tiny LoRAs)."""
    from fitad import zoo
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    base = str(zoo.ensure_tiny("tiny-sd15", models_root))
    loras = [str(zoo.build_tiny_lora(tmp / f"swap-lora{i}", seed=10 + i, root=models_root)) for i in range(2)]
    config = RenderConfig(base_model=base, inpaint_model=None, controlnet_model=None, steps=steps, device="cpu")
    renderer = Renderer(config)
    for lora in loras:                       # first loads: from disk into the pool's CPU cache
        renderer.txt2img(PROMPT, seed=0, lora=lora)
    switch, render, how = [], [], {}
    for i in range(swaps):
        start = time.perf_counter()
        result = renderer.txt2img(PROMPT, seed=i, lora=loras[i % 2])
        render.append(time.perf_counter() - start)
        switch.append(result.lora["swap_seconds"])
        how[result.lora["swap"]] = how.get(result.lora["swap"], 0) + 1
    del renderer
    gc.collect()

    def reload() -> float:
        start = time.perf_counter()
        fresh = Renderer(config)
        fresh.load("txt2img")
        _pipe, pool = fresh._pipe("txt2img")
        fresh._activate(pool, loras[1], 1.0)
        return time.perf_counter() - start

    reload()                                 # file-system cache warm
    reload_s = statistics.median(reload() for _ in range(reloads))
    swap_s = statistics.median(switch)
    ratio = reload_s / swap_s if swap_s > 0 else float("inf")
    return {"swap_ms": round(swap_s * 1000, 3), "swap_p95_ms": pct(switch, 95), "swaps": swaps, "swap_how": how,
            "render_with_swap_p50_ms": pct(render, 50), "reload_ms": round(reload_s * 1000, 1),
            "reloads": reloads, "ratio": round(ratio, 1), "target": f">= {TARGET_SWAP_SPEEDUP:g}x",
            "what": "swap: Renderer's adapter activation between renders (swap_seconds); reload: new Renderer, "
                    "base pipeline load and LoRA load"}


def make_core(world: Any) -> tuple[Any, Any, Any]:
    """``AdServiceCore`` in this process with the service's params.yaml and registry, started; the request
    validator and a pro-tier principal. The caller stops it."""
    from fitad.ads.config import AdConfig
    from fitad.config import load_section
    from fitad.generate.config import RenderConfig
    from fitad.serve.auth import Principal
    from fitad.serve.config import ServeConfig
    from fitad.serve.core import AdServiceCore
    from fitad.serve.requests import Txt2ImgRequest, validate

    params = world.root / "params.yaml"
    serve = load_section(ServeConfig, params)
    core = AdServiceCore(serve, load_section(RenderConfig, params), load_section(AdConfig, params),
                         tracking_uri=world.uri)
    core.start(preload=("txt2img",))
    who = Principal(name="pro-user", tier="pro")

    def render(body: dict) -> Any:
        return core.txt2img(validate(Txt2ImgRequest, body, serve), who)

    return core, render, who


def paired_overhead(client: Any, url: str, body: dict, headers: dict, render: Any, n: int) -> dict[str, Any]:
    """The same request (same seed) in-process and over HTTP, one after the other (order alternating), so
    both see the same machine load: medians, the median paired difference and its fraction."""
    for i in range(3):  # warm-up of both paths
        render({**body, "seed": i})
        client.post(url, json={**body, "seed": i}, headers=headers, timeout=120)
    local, http, diff, server_side = [], [], [], []

    def one_local(i: int) -> float:
        start = time.perf_counter()
        render({**body, "seed": i})
        return time.perf_counter() - start

    def one_http(i: int) -> float:
        start = time.perf_counter()
        r = client.post(url, json={**body, "seed": i}, headers=headers, timeout=120)
        took = time.perf_counter() - start
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code} during the overhead run: {r.text[:300]}")
        server_side.append(took - json.loads(r.headers["x-fitad-meta"])["timings"]["service_total"])
        return took

    for i in range(n):
        if i % 2:
            b, a = one_http(i), one_local(i)
        else:
            a, b = one_local(i), one_http(i)
        local.append(a)
        http.append(b)
        diff.append(b - a)
    local_p50, http_p50 = pct(local, 50), pct(http, 50)
    overhead_ms = statistics.median(diff) * 1000
    return {"n": n, "inprocess_p50_ms": local_p50, "inprocess_p95_ms": pct(local, 95), "http_p50_ms": http_p50,
            "http_p95_ms": pct(http, 95), "overhead_p50_ms": round(overhead_ms, 1),
            "fraction": round(overhead_ms / local_p50, 3),
            "fraction_of_p50s": round((http_p50 - local_p50) / local_p50, 3),
            "client_minus_service_total_p50_ms": pct(server_side, 50),
            "target": f"<= {TARGET_HTTP_OVERHEAD:.0%}",
            "what": "AdServiceCore.txt2img in this process vs POST /txt2img at concurrency 1, same request and "
                    "seed, alternating; fraction = median(HTTP - in-process, per pair) / in-process p50"}


# ---------------------------------------------------------------- over HTTP

def post_many(client: Any, url: str, body: dict, headers: dict, n: int, concurrency: int
              ) -> tuple[list[dict], float]:
    """``n`` POSTs of ``body`` (seed = the request's index) by ``concurrency`` threads, each sending its next
    request as soon as the previous one is answered; a record per request and the wall time."""
    counter, lock, out = iter(range(n)), threading.Lock(), []

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            record: dict[str, Any] = {"i": i}
            try:
                r = client.post(url, json={**body, "seed": i}, headers=headers, timeout=120)
                record.update(status=r.status_code, retry_after=r.headers.get("retry-after"))
                if r.status_code == 200:
                    record["service_total"] = json.loads(r.headers["x-fitad-meta"])["timings"]["service_total"]
                elif r.status_code != 429:
                    record["body"] = f"{r.status_code} {r.text[:300]}"
            except Exception as exc:  # noqa: BLE001 - a transport failure is a result here
                record.update(status="error", error=f"{type(exc).__name__}: {exc}"[:300])
            record["s"] = time.perf_counter() - start
            with lock:
                out.append(record)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    return out, time.perf_counter() - start


def latency_run(client: Any, url: str, body: dict, headers: dict, n: int, concurrency: int) -> dict[str, Any]:
    records, wall = post_many(client, url, body, headers, n, concurrency)
    ok = [r["s"] for r in records if r.get("status") == 200]
    out = summary(ok, wall) if ok else {"n": 0}
    out["concurrency"] = concurrency
    out["statuses"] = count_statuses(records)
    server = [r["s"] - r["service_total"] for r in records if r.get("status") == 200]
    if server and concurrency == 1:
        out["client_minus_service_total_p50_ms"] = pct(server, 50)
    odd = [r.get("body") or r.get("error") for r in records if r.get("status") not in (200, 429)]
    if odd:
        out["examples"] = odd[:3]
    return out


def count_statuses(records: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of the load run")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients of the load run")
    parser.add_argument("--latency-requests", type=int, default=200, help="requests per latency run (c=1, c=4)")
    parser.add_argument("--overhead-requests", type=int, default=150,
                        help="request pairs (in-process, HTTP) of the overhead run")
    parser.add_argument("--format", default="64x64", help="txt2img format (64x64: tiny-sd15's native size)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per request")
    parser.add_argument("--max-queue", type=int, default=4, help="serve.max_queue (requests waiting beyond "
                        "the one rendering; must be >= 3 for concurrency 4 without 429)")
    parser.add_argument("--swaps", type=int, default=50, help="renders alternating two LoRAs")
    parser.add_argument("--reloads", type=int, default=5, help="full Renderer + LoRA reloads timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (the server runs "
                        "with OMP_NUM_THREADS=1)")
    parser.add_argument("--models-root", default=os.environ.get("FITAD_TEST_MODELS"),
                        help="tiny model cache (default $FITAD_TEST_MODELS, else $FITAD_HOME/models or "
                             "./.fitad/models of the project)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server log) and print its path")
    args = parser.parse_args(argv)

    import httpx
    import torch

    from tests.serving.conftest import KEYS, Server, build_world

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    models_root = Path(args.models_root) if args.models_root else (
        Path(os.environ["FITAD_HOME"]) / "models" if os.environ.get("FITAD_HOME") else ROOT / ".fitad" / "models")
    report: dict[str, Any] = {
        "benchmark": "serve", "device": "cpu", "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "model": "tiny-sd15 + tiny LoRA (fitad-test@approved)", "format": args.format, "steps": args.steps,
        "max_queue": args.max_queue, "tier": "pro"}
    try:
        import bentoml
        report["bentoml"] = bentoml.__version__
    except Exception:  # noqa: BLE001
        pass
    if torch.cuda.is_available():
        report["gpu"] = (f"CUDA is available ({torch.cuda.get_device_name()}) but not measured here: the "
                         "service runs on the CPU (generate.device = cpu); see benchmarks/ads.py --full-size for "
                         "SD1.5-size latency and VRAM")
    else:
        report["gpu"] = "no CUDA device: GPU latency and VRAM not measured"

    tmp = Path(tempfile.mkdtemp(prefix="fitad-bench-serve-"))
    server = None
    body = {"prompt": PROMPT, "format": args.format, "steps": args.steps}
    headers = {"Authorization": f"Bearer {KEYS['pro']}"}
    try:
        t0 = time.perf_counter()
        world = build_world(tmp / "world", models_root, serve={"max_queue": args.max_queue, "poll_s": 30.0},
                            generate={"device": "cpu"})
        report["setup_s"] = round(time.perf_counter() - t0, 1)

        report["lora_swap"] = bench_swap(models_root, tmp, args.steps, args.swaps, args.reloads)
        os.environ.update({k: world.env[k] for k in ("FITAD_HOME", "FITAD_PARAMS", "MLFLOW_TRACKING_URI")})

        t0 = time.perf_counter()
        server = Server(world.env, tmp / "serve.log")
        server.wait_ready()
        report["cold_start_s"] = round(time.perf_counter() - t0, 2)
        report["rss_at_ready_mb"] = tree_rss_mb(server.proc.pid)["rss_mb"]
        url = server.url
        with httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:
            post_many(client, f"{url}/txt2img", body, headers, 4, 1)  # warm-up
            c1 = latency_run(client, f"{url}/txt2img", body, headers, args.latency_requests, 1)
            c4 = latency_run(client, f"{url}/txt2img", body, headers, args.latency_requests, 4)
            report["txt2img"] = {"c1": c1, "c4": c4}

            core, render, _who = make_core(world)
            try:
                report["http_overhead"] = paired_overhead(client, f"{url}/txt2img", body, headers, render,
                                                          args.overhead_requests)
            finally:
                core.stop()
                del core, render
                gc.collect()

            rss_before = tree_rss_mb(server.proc.pid)
            records, wall = post_many(client, f"{url}/txt2img", body, headers, args.requests, args.concurrency)
            rss_after = tree_rss_mb(server.proc.pid)
            statuses = count_statuses(records)
            ok = [r["s"] for r in records if r.get("status") == 200]
            refused = [r for r in records if r.get("status") == 429]
            five = [r for r in records if isinstance(r.get("status"), int) and r["status"] >= 500]
            other = [r for r in records if not (isinstance(r.get("status"), int)
                                                and (200 <= r["status"] < 300 or r["status"] == 429))]
            ready_after = httpx.get(f"{url}/readyz", timeout=10).status_code == 200
            report["load"] = {
                "requests": args.requests, "concurrency": args.concurrency, "wall_s": round(wall, 2),
                "statuses": statuses, "5xx": len(five), "other_than_2xx_or_429": len(other),
                "ok_p50_ms": pct(ok, 50) if ok else None, "ok_p95_ms": pct(ok, 95) if ok else None,
                "ok_rps": round(len(ok) / wall, 2),
                "429_with_retry_after": sum(1 for r in refused if r.get("retry_after")),
                "429_p50_ms": pct([r["s"] for r in refused], 50) if refused else None,
                "ready_after": ready_after,
                "rss_before_mb": rss_before["rss_mb"], "rss_after_mb": rss_after["rss_mb"],
                "rss_growth_mb": round(rss_after["rss_mb"] - rss_before["rss_mb"], 1),
                "rss_after_per_process_mb": rss_after["per_process_mb"],
                "examples": [r.get("body") or r.get("error") for r in other[:3]]}
        report["meets_targets"] = {
            "lora_swap_20x": report["lora_swap"]["ratio"] >= TARGET_SWAP_SPEEDUP,
            "http_overhead_10pct": report["http_overhead"]["fraction"] <= TARGET_HTTP_OVERHEAD,
            "load_no_5xx": report["load"]["5xx"] == 0,
            "load_only_2xx_or_429": report["load"]["other_than_2xx_or_429"] == 0,
            "ready_after_load": report["load"]["ready_after"],
            "latency_runs_all_200": all(set(run["statuses"]) == {"200"} for run in report["txt2img"].values())}
    except Exception as exc:  # noqa: BLE001 - the report says what failed
        report["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        if server is not None:
            report["server_log_tail"] = server.tail(30)
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            report["kept"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    sys.exit(1 if "error" in result else 0)
