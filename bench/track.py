"""Tracked-click redirects per second under wrk, against a bare Starlette app on the same server.

    python -m bench.track [--rounds 3] [--duration 5] [--connections 64] [--messages 5000] [--database URL]

Both servers are one uvicorn process on 127.0.0.1 with the same settings; wrk (Debian's package,
installed if missing) requests signed click URLs of real stored messages for a bounded time, in
alternating rounds (bare, Kairos, bare, Kairos, ...) so that other load on the machine falls on
both alike.
Afterwards every 302 answered must be a stored `click` event: `lost` counts those that are not.
Prints JSON; the target is a ratio of at least 0.5 against the bare app.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import func, select

from engine.dispatch.inbox import free_port
from engine.render.tokens import TokenKind, TrackingToken, sign_token, token_key
from engine.store import Event, Message, MessageState, Recipient, Run, Store
from engine.store.db import upsert

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-track-secret"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True)
    return shutil.which("wrk") or sys.exit("wrk is not installed and could not be installed")


def seed(store: Store, count: int) -> list[str]:
    """``count`` sent messages and one signed click path for each."""
    now = datetime.now(UTC)
    with store.session() as session:
        session.add(Run(id=1, campaign="bench", spec_hash="x", started_at=now))
        upsert(session, Recipient, [{"id": f"r{n}", "email": f"r{n}@example.test", "timezone": "UTC",
                                     "attributes": {}, "created_at": now, "updated_at": now}
                                    for n in range(count)], ["id"])
        upsert(session, Message, [{"id": n + 1, "run_id": 1, "campaign": "bench", "recipient_id": f"r{n}",
                                   "state": MessageState.SENT, "send_at": now, "channel": "email",
                                   "variant": "a", "attempts": 1, "updated_at": now} for n in range(count)], ["id"])
    key = token_key(SECRET.encode())
    return [f"/c/{sign_token(key, TrackingToken(TokenKind.CLICK, n + 1, f'r{n}', 0, 'item-1', url))}"
            for n in range(count) for url in ["https://news.example.test/article?utm_source=kairos"]]


def lua_script(paths: list[str], directory: Path) -> Path:
    script = directory / "paths.lua"
    entries = ",".join(json.dumps(p) for p in paths)
    script.write_text(f"local paths = {{{entries}}}\nlocal n = 0\n"
                      "request = function()\n  n = n + 1\n  return wrk.format('GET', paths[(n % #paths) + 1])\nend\n")
    return script


def run_server(kind: str, database: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.track_server", kind, "--port", str(port),
                                "--db", database, "--secret", SECRET], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the {kind} server did not start")
        time.sleep(0.05)


def run_wrk(wrk: str, base: str, script: Path, duration: int, connections: int, threads: int) -> dict[str, Any]:
    result = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", str(script), base],
                            capture_output=True, text=True, check=True)
    output = result.stdout
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    latency = re.search(r"Latency\s+([\d.]+)(\w+)", output)
    return {"requests": total, "per_second": rate, "non_2xx_3xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
            "mean_latency": f"{latency.group(1)}{latency.group(2)}" if latency else None}


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk runs of one app as one: totals, and the rate over their summed time."""
    seconds = sum(run["requests"] / run["per_second"] for run in runs)
    total = sum(run["requests"] for run in runs)
    return {"requests": total, "per_second": round(total / seconds, 2),
            "non_2xx_3xx": sum(run["non_2xx_3xx"] for run in runs),
            "socket_errors": sum(run["socket_errors"] for run in runs),
            "mean_latency": [run["mean_latency"] for run in runs]}


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and app")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--database", help="a store URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="kairos-bench-track-") as temp:
        directory = Path(temp)
        database = args.database or f"sqlite:///{directory / 'track.db'}"
        store = Store.open(database)
        script = lua_script(seed(store, args.messages), directory)
        servers = {kind: run_server(kind, database) for kind in ("bare", "kairos")}
        rounds: list[dict[str, dict[str, float]]] = []
        try:
            # Alternate short runs, so a change in the machine's load hits both apps alike.
            for _ in range(args.rounds):
                rounds.append({kind: run_wrk(wrk, base, script, args.duration, args.connections, args.threads)
                               for kind, (_, base) in servers.items()})
        finally:
            for process, _ in servers.values():
                stop(process)
        with store.session() as session:
            stored = int(session.exec(select(func.count()).select_from(Event).where(Event.type == "click")).one())
        results = {kind: combine([r[kind] for r in rounds]) for kind in servers}
        answered = results["kairos"]["requests"] - results["kairos"]["non_2xx_3xx"]
        ratios = sorted(r["kairos"]["per_second"] / r["bare"]["per_second"] for r in rounds)
    print(json.dumps({
        "benchmark": "tracked-click redirects per second (wrk on loopback)",
        "database": "sqlite" if database.startswith("sqlite") else "postgresql",
        "rounds": args.rounds, "seconds_per_round": args.duration, "connections": args.connections,
        "wrk_threads": args.threads, "bare_starlette": results["bare"], "kairos": results["kairos"],
        "ratio": round(results["kairos"]["per_second"] / results["bare"]["per_second"], 3),
        "ratio_per_round": [round(r, 3) for r in ratios], "ratio_median": round(ratios[len(ratios) // 2], 3),
        "redirects_answered": answered, "click_events_stored": stored, "lost": max(0, answered - stored),
        "target_ratio": 0.5,
    }, indent=1))


if __name__ == "__main__":
    main()
