"""The benchmark scripts keep working: bench/run.py --smoke (tiny sizes, no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SHARED, require


def test_bench_run_smoke(needs_root: None, tmp_path: Path) -> None:
    require((SHARED / "bench" / "e2e.py").exists(), f"the shared harness in {SHARED} is absent")
    subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--data",
                    str(tmp_path / "data"), "--out", str(tmp_path / "out")], check=True,
                   timeout=600, capture_output=True)
    result = json.loads((tmp_path / "out" / "smoke.json").read_text())
    figures = result["figures"]
    for key in ("auth_lines_per_s", "mail_lines_per_s", "latency_p50_ms", "burst_all_banned_s",
                "unban_cli_ms"):
        assert figures[key] > 0, key
    assert figures["restart_left_in_kernel"] == figures["restart_expected"] == 200
    for what in ("status", "unban"):  # commands answered during the storm
        assert 0 < figures[f"storm_{what}_p50_ms"] <= figures[f"storm_{what}_max_ms"]
    assert figures["history_store_storm_s"] > 0  # the storm's failures were stored
    assert figures["history_store_storm_with_address_index_s"] > 0
    assert figures["history_incident_s"] > 0  # the evidence was found (else: NoIncident)
    table = (tmp_path / "out" / "smoke.md").read_text()
    assert "| auth_lines_per_s |" in table and "x fail2ban" in table
    assert "| unban |" in table and "bench/history_writes.py" in table
