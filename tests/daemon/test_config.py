"""config.py: the daemon's settings, read once from the environment."""
from __future__ import annotations

import pytest

from int8wb.daemon.config import Settings

NAMES = ("INT8WB_DEBOUNCE_SECONDS", "INT8WB_SETTLE_SECONDS", "INT8WB_RESCAN_SECONDS", "INT8WB_MAX_JOBS",
         "INT8WB_LOG", "INT8WB_TRUST")


@pytest.fixture
def env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_come_from_the_environment(env):
    assert Settings.from_env() == Settings()
    env.setenv("INT8WB_MAX_JOBS", "3")
    env.setenv("INT8WB_SETTLE_SECONDS", "0.5")
    env.setenv("INT8WB_TRUST", "1")
    settings = Settings.from_env()
    assert settings.max_jobs == 3 and settings.settle_s == 0.5 and settings.trust_custom_metrics is True
    assert settings.debounce_s == Settings.debounce_s and settings.rescan_s == Settings.rescan_s


def test_a_bad_setting_names_its_variable(env):
    env.setenv("INT8WB_MAX_JOBS", "two")
    with pytest.raises(ValueError, match="INT8WB_MAX_JOBS='two': expected an integer"):
        Settings.from_env()
    env.setenv("INT8WB_MAX_JOBS", "1")
    env.setenv("INT8WB_RESCAN_SECONDS", "soon")
    with pytest.raises(ValueError, match="INT8WB_RESCAN_SECONDS='soon': expected a number"):
        Settings.from_env()


def test_editor_settings_apply_live_ones_and_say_why_others_are_refused():
    from int8wb.daemon.config import with_options

    base = Settings()
    new, refused = with_options(base, {"debounceSeconds": 0.5, "rescanSeconds": 5})
    assert (new.debounce_s, new.rescan_s, refused) == (0.5, 5.0, [])
    new, refused = with_options(base, {"debounceSeconds": "fast", "maxJobs": 3, "rescanSeconds": True})
    assert new == base and len(refused) == 3
    assert "debounceSeconds must be a number of seconds" in refused[0] and "maxJobs is not a setting" in refused[1]
    assert with_options(base, None) == (base, [])
    assert with_options(base, [1])[1] == ["int8wb settings must be an object, got list"]
