"""The job worker `kilo-bridge serve` runs beside its web processes: one `kilo-bridge worker` process, so
there is one bullmq worker and one reaper however many web workers there are.

It dies with `serve` (PR_SET_PDEATHSIG, SIGTERM: its own graceful stop), is restarted if it exits on its
own, and is stopped with SIGTERM when `serve` stops, given JOB_SHUTDOWN_GRACE_S for running jobs
(`LocalWorker.close`) and then killed.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading

from kilo_bridge.config import PROJECT_ROOT, Settings
from kilo_bridge.platform.aio import die_with_parent

RESTART_DELAY_S = 1.0
# Beyond the grace: the worker's own Redis writes and bullmq's close.
STOP_MARGIN_S = 10.0


class WorkerProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._spawn()
        self._watch = threading.Thread(target=self._keep_alive, name="job-worker", daemon=True)
        self._watch.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "kilo_bridge", "worker", "--concurrency", str(self.settings.jobs_concurrency)],
                cwd=str(PROJECT_ROOT),
                # PORT is this server's: the agents' BRIDGE_URL default (http://127.0.0.1:$PORT) reaches it.
                env={**os.environ, "PORT": str(self.settings.port)},
                stdin=subprocess.DEVNULL,
                preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
            )

    def _keep_alive(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.wait(RESTART_DELAY_S):
                return
            print(f"kilo-bridge: the job worker exited with {code}; restarting it", file=sys.stderr, flush=True)
            self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.settings.job_shutdown_grace_s + STOP_MARGIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
