"""[anomaly] settings win over the detectors' saved state; learned data is kept."""

from __future__ import annotations

import json

from tailban.anomaly.distributed import LayeredDetector
from tailban.anomaly.login import LoginEvent, LoginModel
from tailban.config.model import AnomalySettings
from tailban.daemon.anomaly import AnomalyWorker


def test_settings_apply_to_new_and_saved_detectors() -> None:
    settings = AnomalySettings(threshold=9.0, min_history=30, net_window=1200.0,
                               net_min_addresses=8, net_min_accounts=9)
    fresh = AnomalyWorker(settings, None, {}, lambda alerts: None, {})
    assert (fresh.logins.threshold, fresh.logins.min_history) == (9.0, 30)
    assert (fresh.network.fast.config.window, fresh.network.fast.config.min_addresses,
            fresh.network.fast.config.min_accounts) == (1200.0, 8, 9)
    assert fresh.network.slow.config.window == 21600.0

    saved = LoginModel(threshold=6.0, min_history=20)
    saved.learn(LoginEvent("alice", "192.0.2.1", 1_790_000_000.0))
    states = {"logins": json.dumps(saved.to_state()),
              "distributed": json.dumps(LayeredDetector().to_state())}
    loaded = AnomalyWorker(settings, None, states, lambda alerts: None, {})
    assert loaded.logins.history("alice") == 1  # what was learned is kept
    assert (loaded.logins.threshold, loaded.logins.min_history) == (9.0, 30)
    assert loaded.network.fast.config.window == 1200.0
