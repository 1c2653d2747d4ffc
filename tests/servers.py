"""Servers the team-setup tests start on loopback: an MLflow tracking server (artifacts proxied to a folder,
its backend a sqlite file or a PostgreSQL database) and a private PostgreSQL cluster. Each one is a real
process, stopped and started again as a test needs (a server restart mid-training), and always stopped at
the end of its block."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} did not come up within {timeout:.0f} s\n{tail}")


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except OSError:
        return False


class MlflowServer:
    """`mlflow server` on 127.0.0.1:<port> with `backend` and artifacts proxied to `artifacts`
    (clients see mlflow-artifacts:/ URIs and never touch the folder). stop() and start() keep the port,
    the backend and the artifacts: a restart, as an operator would do it."""

    def __init__(self, backend: str, artifacts: Path, log: Path):
        self.backend, self.artifacts, self.log = backend, artifacts, log
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        # no job runner: the pipeline starts no server-side jobs (MLflow's GenAI scorers), and the runner's nine
        # processes (huey consumers) cost about 5 s of CPU at every start
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_until(lambda: answers(self.uri + "/health"), f"mlflow server {self.uri}", timeout, self.log)

    def stop(self) -> None:
        """The whole process group (the server and its uvicorn worker), then the port is free again."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        wait_until(lambda: not answers(self.uri + "/health"), f"the stop of {self.uri}", 30)


@contextlib.contextmanager
def mlflow_server(folder: Path, backend: str | None = None) -> Iterator[MlflowServer]:
    """A tracking server for the block; its backend a sqlite file in `folder` unless given."""
    folder.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(backend or f"sqlite:///{folder / 'server.db'}", folder / "artifacts", folder / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), if installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port, with a database `mlflow`; yields its
    SQLAlchemy URI. PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user
    that Debian's package creates, in a folder of its own under the system's temp folder (pytest's are
    private to root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise AssertionError("PostgreSQL is not installed: apt-get install postgresql")
    folder, port = Path(tempfile.mkdtemp(prefix="pipeline-pg-")), free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")

    def pg(*args: str) -> None:
        r = subprocess.run(as_user + list(args), capture_output=True, text=True, cwd="/")
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")

    data = folder / "data"
    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"), "-w", "start",
           "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1")
        try:
            pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
            yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
        finally:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
