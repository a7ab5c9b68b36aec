"""`kairos demo` from a checkout: the whole loop on embedded defaults."""

from __future__ import annotations

import mailbox
import os
import re
import sqlite3
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

from tests.conftest import ROOT


def test_demo_runs_every_example_campaign_into_the_local_inbox(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "engine", "demo", "--dir", str(directory), "--recipients", "300"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    delivered = int(re.search(r"(\d+) messages delivered over SMTP", result.stdout).group(1))  # type: ignore[union-attr]
    assert "demo finished in" in result.stdout
    inbox = mailbox.Maildir(str(directory / "inbox"), create=False)
    keys = list(inbox.keys())
    assert delivered == len(keys) > 0

    with sqlite3.connect(directory / "demo.db") as db:
        sent = db.execute("SELECT COUNT(*) FROM message WHERE state = 'sent'").fetchone()[0]
        campaigns = {row[0] for row in db.execute("SELECT DISTINCT campaign FROM run")}
        logged = db.execute("SELECT COUNT(DISTINCT message_id) FROM event WHERE type = 'sent' AND run_id IS NOT NULL"
                            ).fetchone()[0]
        # clicks and opens exist only if the readers' requests reached the tracking server, which
        # attributes each to its message
        tracked = dict(db.execute("SELECT type, COUNT(*) FROM event WHERE message_id IS NOT NULL "
                                  "AND type IN ('click', 'open') GROUP BY type").fetchall())
    assert sent == delivered == logged
    readings = re.findall(r"readers acted on (\d+) messages through the tracking server in [\d.]+s: (\d+) opens, "
                          r"(\d+) clicks", result.stdout)
    assert sum(int(m) for m, _, _ in readings) == delivered
    assert tracked.get("open", 0) == sum(int(o) for _, o, _ in readings) > 0
    assert tracked.get("click", 0) == sum(int(c) for _, _, c in readings) > 0
    assert "refused" not in result.stdout
    # the lift against the holdout, on conversions both groups can reach, with its interval
    assert re.search(r"weekly-digest: conversions within 7 days, [\d.]+% of \d+ sent messages against [\d.]+% of "
                     r"\d+ held out: lift [+-][\d.]+ pts \[[+-][\d.]+, [+-][\d.]+\] \(95% CI", result.stdout)
    assert campaigns == {"weekly-digest", "spotlight"}
    for key in keys[:20]:
        message = message_from_bytes(inbox.get_bytes(key), policy=policy.default)
        assert re.fullmatch(r"r\d{5}@example\.test", str(message["To"]))
        assert message.get_body(preferencelist=("plain",)) is not None
        assert message.get_body(preferencelist=("html",)) is not None
