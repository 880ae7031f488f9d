"""Each Lambda handler (and the stream function's server) loads with the garbage collector off and leaves it
on, with what the import built frozen out of later collections (the cold-start saving of functions/*/app.py and
functions/stream/serve.py; the benchmark measures it)."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable

import pytest

from kilo_bridge.config import Settings, settings_env
from scripts.invoke import load_function
from tests.support import ROOT


@pytest.mark.parametrize("function", ["api", "dispatcher", "finalizer", "scheduled"])
def test_handler_import_freezes_and_reenables_the_collector(
    function: str, job_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings_env(job_settings(jobs_concurrency=0)).items():
        monkeypatch.setenv(name, value)
    gc.unfreeze()  # whatever an earlier test froze goes back, so the count below is this import's
    try:
        module = load_function(function)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert callable(module.handler)
    finally:
        gc.unfreeze()
        gc.enable()


def test_stream_server_import_freezes_and_reenables_the_collector(
    job_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings_env(job_settings(jobs_concurrency=0)).items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("stream_serve_gc", ROOT / "functions" / "stream" / "serve.py")
    assert spec and spec.loader
    gc.unfreeze()
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # builds the app; serves nothing until main()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert callable(module.main)
    finally:
        gc.unfreeze()
        gc.enable()
