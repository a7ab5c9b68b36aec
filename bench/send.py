"""Sending throughput, side by side in one run, into Postfix's smtp-sink on loopback.

    python -m bench.send [--recipients 20000] [--large 200000] [--rounds 3] [--output result.json]

What is measured (messages per second, all into the same smtp-sink):

- ``smtp_source``: Postfix's smtp-source, 20 sessions kept open, messages of the same size:
  the transport's practical limit on this machine;
- ``naive``: what a user would otherwise write - Jinja, ``EmailMessage``, smtplib over one
  connection;
- ``transport``: Kairos's SMTP transport alone on pre-rendered messages, pipelined (RFC 2920)
  and through aiosmtplib's own ``sendmail``, to show what the pipelining buys;
- ``kairos``: ``kairos send`` of a personalized campaign (plan, decide, render, dispatch and
  record every message, on SQLite), without and with DKIM signing configured, and its peak
  memory (RSS) at ``--recipients`` and ``--large`` recipients. Its ``rate`` is the whole
  command's, from process start to exit; ``phases`` splits that time (start-up, planning,
  sending) from the times the store recorded. ``large_vs_smtp_source`` compares the
  ``--large`` run with smtp-source sending as many messages just before and just after it.

Each run also reports ``cpu_per_message``: the CPU microseconds per message of the sender (with
the processes it started and waited for) and of smtp-sink. When the cores are all busy, the rate
ratio follows the ratio of those totals (``cpu_per_message_vs_smtp_source``), whatever the
sending code does with its time.

Ratios are against smtp-source and the naive sender. A shared machine's speed drifts by a fifth
from one minute to the next, so smtp-source, the naive sender and ``kairos send`` run in
``--rounds`` alternating rounds and the ratios are of their median rates (every round's rate is
printed too). Prints one JSON object. Installs Debian's ``postfix`` (for smtp-sink and
smtp-source) when missing, and writes the package's bytecode first, as installing it would
(:func:`compile_package`).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import platform
import shutil
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parents[1]
SENDER = "news@bench.test"


def ensure_postfix() -> None:
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    root = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    answer = b"postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run([*root, "debconf-set-selections"], input=answer, check=True)
    subprocess.run([*root, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*root, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"], check=True,
                   env=env)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    """smtp-sink on a free loopback port (PIPELINING on, messages discarded)."""

    def __init__(self) -> None:
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{self.port}", "1000"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) smtp-sink has used so far."""
        return _cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _cpu(sender_seconds: float, sink_seconds: float, messages: int) -> dict[str, float]:
    """CPU microseconds per message of the sender and of the sink."""
    return {"sender_us": round(sender_seconds / messages * 1e6, 1), "sink_us": round(sink_seconds / messages * 1e6, 1)}


def _waited_cpu(usage: Any) -> float:
    """The CPU seconds of a waited-for process and the children it waited for (wait4's rusage)."""
    return float(usage.ru_utime + usage.ru_stime)


def write_project(directory: Path, recipients: int, port: int, dkim: bool) -> None:
    shutil.copytree(ROOT / "templates", directory / "templates", dirs_exist_ok=True)
    (directory / "campaigns").mkdir(exist_ok=True)
    with (directory / "recipients.csv").open("w") as handle:
        handle.write("id,email,timezone,first_name,plan\n")
        for n in range(recipients):
            handle.write(f"r{n:07d},user{n}@example{n % 50}.test,Europe/Madrid,Name{n},{'pro' if n % 3 else 'free'}\n")
    with (directory / "content.csv").open("w") as handle:
        handle.write("id,pool,title,url,topic,published_at,reading_minutes\n")
        for j in range(40):
            handle.write(f"n{j},news,Headline number {j},https://news.example.test/{j},topic{j % 6},"
                         f"2026-11-20T08:00:00+00:00,{3 + j % 7}\n")
    (directory / "campaigns" / "news.toml").write_text(textwrap.dedent("""
        [campaign]
        name = "news"
        goal = "click"

        [content]
        pool = "news"
        items = 3

        [[variants]]
        name = "picks"
        subject = "{{ items[0].title }} and 2 more for {{ recipient.attributes.first_name }}"
        template = "digest"

        [[variants]]
        name = "plain"
        subject = "Your picks, {{ recipient.attributes.first_name }}"
        template = "digest"
        """))
    config = textwrap.dedent(f"""
        [database]
        url = "sqlite:///kairos.db"

        [email]
        host = "127.0.0.1"
        port = {port}
        from = "Bench News <{SENDER}>"
        max_connections = 20

        [sending]
        batch_size = 1000
        """)
    if dkim:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (directory / "dkim.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                                               serialization.NoEncryption()))
        config += '\n[email.dkim]\ndomain = "bench.test"\nselector = "k1"\nprivate_key_file = "dkim.pem"\n'
    (directory / "config.toml").write_text(config)


def kairos(directory: Path, *args: str) -> str:
    """Run the real command in ``directory``; its output."""
    env = {"KAIROS_SECRET": "bench-secret", **os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "engine", *args, "--config", "config.toml"], cwd=directory,
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kairos {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class PeakMemory:
    """Polls /proc for the peak RSS (VmHWM) of a process and each of its children.

    The planning-and-sending process holds the planned audience; the helper processes of
    ``--workers`` only send, so their peak is the sending path's alone.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _hwm(pid: int) -> int | None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def _children(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[1]) == self.pid:
                    found.append(int(entry.name))
        return found

    def _poll(self) -> None:
        while not self._done.wait(0.1):
            for pid in [self.pid, *self._children()]:
                hwm = self._hwm(pid)
                if hwm is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)

    def stop(self) -> dict[str, float | None]:
        self._done.set()
        self._thread.join()
        helpers = [kib for pid, kib in self.peaks.items() if pid != self.pid]
        return {"helper_peak_rss_mib": round(max(helpers) / 1024, 1) if helpers else None}


def kairos_send(recipients: int, sink: Sink, *, workers: int, dkim: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kairos-bench-") as tmp:
        directory = Path(tmp)
        write_project(directory, recipients, sink.port, dkim)
        kairos(directory, "import", "recipients", "recipients.csv")
        kairos(directory, "import", "content", "content.csv")
        signed = _signs(directory) if dkim else False
        sink_before = sink.cpu_seconds()
        env = {"KAIROS_SECRET": "bench-secret", **os.environ, "PYTHONPATH": str(ROOT)}
        # wait4 gives this process's own rusage: the peak RSS of the planning-and-sending process
        started, wall_start = time.perf_counter(), time.time()
        process = subprocess.Popen([sys.executable, "-m", "engine", "send", "news", "--now", "--seed", "1",
                                    "--workers", str(workers), "--config", "config.toml"], cwd=directory, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        memory = PeakMemory(process.pid)
        _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        sink_seconds = sink.cpu_seconds() - sink_before
        helpers = memory.stop()
        out, err = process.stdout.read().decode(), process.stderr.read().decode()
        if status != 0:
            raise RuntimeError(f"kairos send failed:\n{out}\n{err}")
        sent = _sent(out)
        result = {"recipients": recipients, "workers": workers, "sent": sent, "seconds": round(elapsed, 2),
                  "rate": round(sent / elapsed, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), **helpers,
                  "phases": _phases(directory / "kairos.db", wall_start, sent),
                  "cpu_per_message": _cpu(_waited_cpu(usage), sink_seconds, recipients)}
        if dkim:
            result["signed"] = signed
        return result


def _phases(database: Path, wall_start: float, sent: int) -> dict[str, float]:
    """Where the run's time went, from the times the store recorded: start-up (the process
    loading its code and settings), planning, and sending (first claim to last result). The
    ``rate`` above is the whole command's; ``sending_rate`` is the pump's alone."""
    import sqlite3
    from datetime import UTC, datetime

    def epoch(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    with sqlite3.connect(database) as db:
        [(run_started,)] = db.execute("SELECT min(started_at) FROM run").fetchall()
        [(first_claim, last_update)] = db.execute("SELECT min(claimed_at), max(updated_at) FROM message").fetchall()
    startup = epoch(run_started) - wall_start
    planning = epoch(first_claim) - epoch(run_started)
    sending = epoch(last_update) - epoch(first_claim)
    return {"startup_s": round(startup, 2), "planning_s": round(planning, 2), "sending_s": round(sending, 2),
            "sending_rate": round(sent / sending, 1) if sending > 0 else 0.0}


def _sent(stdout: str) -> int:
    for line in stdout.splitlines():
        if "message states now:" in line:
            for part in line.split(":", 1)[1].split(","):
                count, _space, state = part.strip().partition(" ")
                if state == "sent":
                    return int(count)
    raise RuntimeError(f"no sent count in:\n{stdout}")


def _signs(directory: Path) -> bool:
    """Whether this build signs with the configured DKIM key: one message to a capturing server."""
    from aiosmtpd.controller import Controller

    captured: list[bytes] = []

    class Capture:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            captured.append(envelope.original_content or envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Capture(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        probe = directory / "probe"
        write_project(probe, 1, port, dkim=True)
        shutil.copy(directory / "dkim.pem", probe / "dkim.pem")
        kairos(probe, "import", "recipients", "recipients.csv")
        kairos(probe, "import", "content", "content.csv")
        kairos(probe, "send", "news", "--now")
    finally:
        controller.stop()
    return bool(captured) and b"DKIM-Signature:" in captured[0]


def naive_send(recipients: int, sink: Sink) -> dict[str, Any]:
    """Jinja + EmailMessage + smtplib over one connection: the script a user would write."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "templates")), autoescape=True)
    html, text = environment.get_template("digest.html"), environment.get_template("digest.txt")
    items = [{"id": f"n{j}", "title": f"Headline number {j}", "url": f"https://news.example.test/{j}",
              "topic": f"topic{j % 6}", "attributes": {"reading_minutes": 3 + j % 7}, "slot": j} for j in range(3)]
    sizes = 0
    sink_before, cpu_before = sink.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
        for n in range(recipients):
            subject = f"{items[0]['title']} and 2 more for Name{n}"
            context = {"recipient": {"id": f"r{n}", "email": f"user{n}@example{n % 50}.test",
                                     "attributes": {"first_name": f"Name{n}"}},
                       "items": items, "campaign": {"name": "news", "variant": "picks"},
                       "message": {"subject": subject, "preheader": "",
                                   "unsubscribe_url": f"https://news.example.test/unsubscribe?r=r{n}"}}
            message = EmailMessage()
            message["From"] = f"Bench News <{SENDER}>"
            message["To"] = context["recipient"]["email"]
            message["Subject"] = subject
            message.set_content(text.render(context))
            message.add_alternative(html.render(context), subtype="html")
            data = message.as_bytes()
            sizes += len(data)
            smtp.sendmail(SENDER, [context["recipient"]["email"]], data)
    elapsed = time.perf_counter() - started
    cpu = _cpu(time.process_time() - cpu_before, sink.cpu_seconds() - sink_before, recipients)
    return {"messages": recipients, "seconds": round(elapsed, 2), "rate": round(recipients / elapsed, 1),
            "message_bytes": sizes // recipients, "cpu_per_message": cpu}


def smtp_source(messages: int, sink: Sink, size: int) -> dict[str, Any]:
    sink_before = sink.cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(["smtp-source", "-s", "20", "-d", "-m", str(messages), "-l", str(size), "-f", SENDER,
                                "-t", "user@example.test", f"127.0.0.1:{sink.port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"smtp-source exited with status {status}")
    return {"messages": messages, "sessions": 20, "message_bytes": size, "seconds": round(elapsed, 2),
            "rate": round(messages / elapsed, 1),
            "cpu_per_message": _cpu(_waited_cpu(usage), sink.cpu_seconds() - sink_before, messages)}


def transport_only(messages: int, port: int, size: int, pipelining: bool) -> dict[str, Any]:
    """Kairos's SMTP transport on pre-rendered messages (no decide, render or database)."""
    sys.path.insert(0, str(ROOT))
    from engine.dispatch import Envelope, SmtpTransport

    body = b"From: news@bench.test\r\nSubject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * max(1, size // 78)
    envelopes = [Envelope(n, SENDER, (f"user{n}@example{n % 50}.test",), body) for n in range(messages)]

    async def run() -> float:
        transport = SmtpTransport("127.0.0.1", port, max_connections=20, pipelining=pipelining)
        started = time.perf_counter()
        for start in range(0, messages, 1000):
            await asyncio.gather(*(transport.send(e) for e in envelopes[start:start + 1000]))
        elapsed = time.perf_counter() - started
        await transport.close()
        return elapsed

    elapsed = asyncio.run(run())
    return {"messages": messages, "pipelining": pipelining, "connections": 20, "seconds": round(elapsed, 2),
            "rate": round(messages / elapsed, 1)}


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate, with every round's rate beside it."""
    ordered = sorted(rounds, key=lambda r: r["rate"])
    return {**ordered[(len(ordered) - 1) // 2], "rates": [r["rate"] for r in rounds]}


def compile_package() -> str:
    """Write the package's bytecode, as installing it does (pip compiles what it installs).

    On a machine that sets PYTHONDONTWRITEBYTECODE, an editable checkout never gets it written,
    so every ``kairos`` start would compile each of its modules from source again - a fifth of
    a second that no installed copy pays. Python still reads bytecode that exists.
    """
    compileall.compile_dir(ROOT / "engine", quiet=1)
    return "engine/ compiled before the rounds, as an install does"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000, help="audience for the memory comparison (0: skip)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="kairos send --workers")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the rate comparison")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    ensure_postfix()
    bytecode = compile_package()
    sink = Sink()
    try:
        naives, sources, campaigns = [], [], []
        for _round in range(max(1, args.rounds)):
            naives.append(naive_send(args.recipients, sink))
            sources.append(smtp_source(args.recipients, sink, naives[0]["message_bytes"]))
            campaigns.append(kairos_send(args.recipients, sink, workers=args.workers))
        naive, source, campaign = median_round(naives), median_round(sources), median_round(campaigns)
        size = naive["message_bytes"]
        pipelined = transport_only(args.recipients, sink.port, size, pipelining=True)
        plain = transport_only(args.recipients, sink.port, size, pipelining=False)
        one_worker = kairos_send(args.recipients, sink, workers=1) if args.workers > 1 else campaign
        signed = kairos_send(args.recipients, sink, workers=args.workers, dkim=True)
        large, large_sources = None, []
        if args.large:  # the same comparison at the larger size: smtp-source just before and just after
            large_sources.append(smtp_source(args.large, sink, size))
            large = kairos_send(args.large, sink, workers=args.workers)
            large_sources.append(smtp_source(args.large, sink, size))
    finally:
        sink.stop()

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3)

    def cpu_total(run: dict[str, Any]) -> float:
        return float(run["cpu_per_message"]["sender_us"] + run["cpu_per_message"]["sink_us"])

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "bytecode": bytecode},
        "smtp_source": source,
        "naive": naive,
        "transport": {"pipelined": pipelined, "aiosmtplib_sendmail": plain,
                      "pipelined_vs_sendmail": ratio(pipelined["rate"], plain["rate"]),
                      "pipelined_vs_smtp_source": ratio(pipelined["rate"], source["rate"])},
        "kairos": {
            "campaign": campaign,
            "one_worker": one_worker,
            "dkim": signed,
            "vs_smtp_source": ratio(campaign["rate"], source["rate"]),
            "vs_naive": ratio(campaign["rate"], naive["rate"]),
            "dkim_vs_smtp_source": ratio(signed["rate"], source["rate"]),
            "cpu_per_message_vs_smtp_source": ratio(cpu_total(source), cpu_total(campaign)),
            **({"large_vs_smtp_source": {
                "recipients": large["recipients"], "rate": large["rate"],
                "smtp_source_rates": [run["rate"] for run in large_sources],
                "ratio": ratio(large["rate"], sum(run["rate"] for run in large_sources) / len(large_sources))}}
               if large else {}),
            "memory": {
                "planning_and_sending_mib": {str(campaign["recipients"]): campaign["peak_rss_mib"],
                                             **({str(large["recipients"]): large["peak_rss_mib"]} if large else {})},
                "sending_only_mib": {str(campaign["recipients"]): campaign["helper_peak_rss_mib"],
                                     **({str(large["recipients"]): large["helper_peak_rss_mib"]} if large else {})},
                "large_run": large},
        },
        "targets": {"vs_smtp_source": 0.3, "vs_naive": 5.0},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
