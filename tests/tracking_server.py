"""A shared MLflow tracking server for tests: a throw-away PostgreSQL cluster, ``mlflow server`` on it with proxied
artifacts, and a server that accepts connections and never answers.

Imported as ``tracking_server`` by tests/test_tracking_server.py (pytest puts tests/ on ``sys.path``). Also usable
by hand: ``python tests/tracking_server.py`` starts both and prints the tracking URI until Ctrl-C.

- ``postgres_bin()``: the folder of Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``, newest
  first) or the one holding ``initdb`` on ``PATH``; ``None`` when PostgreSQL is not installed.
- ``Postgres``: ``initdb`` of a new cluster in a temporary folder (trust authentication, UTF-8, fsync off), the
  server on a free port of 127.0.0.1 with its unix socket in that folder, one database created with psycopg.
  PostgreSQL refuses to run as root: as root, the folder is given to the ``postgres`` user and the processes run
  as that user (``subprocess`` ``user=``/``group=``, the same as ``runuser -u postgres --``).
- ``MlflowServer``: ``mlflow server --backend-store-uri postgresql+psycopg://… --artifacts-destination <folder>``
  (artifacts proxied: clients never touch the folder), waits for ``/health``.
- ``HangingServer``: a socket on a free port that accepts connections and never sends a byte.

Every process runs in its own process group and is stopped (then killed) by group id; folders are removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PG_READY_SECONDS = 60
SERVER_READY_SECONDS = 180  # migrations of a fresh database, on 2 busy cores
POSTGRES_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """Where ``initdb``, ``postgres`` are: Debian's versioned folder (newest), else ``PATH``; ``None`` if absent."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if (p / "bin" / "initdb").exists() and p.name.split(".")[0].isdigit()),
            key=lambda p: [int(part) for part in p.name.split(".") if part.isdigit()],
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    found = shutil.which("initdb")
    if found and Path(found).with_name("postgres").exists():
        return Path(found).parent
    return None


def _stop_group(process: subprocess.Popen, sig: int, timeout: float = 20) -> None:
    """Signal a process's whole group (it was started with its own session), wait, then SIGKILL the group."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


class Postgres:
    """A temporary PostgreSQL cluster with one database; ``uri`` is its SQLAlchemy URI (psycopg 3 driver)."""

    def __init__(self, database: str = "mlflow") -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
        self.database = database
        self.port = free_port()
        # not under pytest's tmp_path: its parents are 0700 root, and the postgres user must reach this folder
        self.root = Path(tempfile.mkdtemp(prefix="musicbench-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.process: subprocess.Popen | None = None
        self._as_user: dict = {}
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(POSTGRES_USER)  # KeyError: no postgres user (Debian's package creates it)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, cwd=self.root, **self._as_user, env=self._env()
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def start(self) -> Postgres:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),  # the unix socket lives here, not in /var/run/postgresql
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=100",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                start_new_session=True,
                **self._as_user,
            )
        self._wait_ready()
        import psycopg

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')
        return self

    def _conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={POSTGRES_USER} dbname={database} connect_timeout=2"

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + PG_READY_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}):\n{_tail(self.log)}")
            try:
                with psycopg.connect(self._conninfo("postgres")):
                    return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {PG_READY_SECONDS} s:\n{_tail(self.log)}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGINT)  # SIGINT: "fast" shutdown (SIGTERM waits for clients)
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on ``backend_store_uri`` with proxied artifacts under ``artifacts``; ``uri`` is its URL."""

    def __init__(self, backend_store_uri: str, artifacts: Path, log: Path, workers: int = 2) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts = artifacts
        self.log = log
        self.workers = workers
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def start(self) -> MlflowServer:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + SERVER_READY_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}):\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server not ready after {SERVER_READY_SECONDS} s:\n{_tail(self.log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGTERM)  # the server and its uvicorn workers: one process group


class HangingServer:
    """A TCP socket on 127.0.0.1 that accepts every connection and never answers (until ``close``)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(connection)  # held open, never read from or written to

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _interrupt(signum, frame):  # pragma: no cover - by hand
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover - by hand
    # stop cleanly on Ctrl-C and on kill (SIGINT is ignored in a background job of a non-interactive shell)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    database = Postgres()
    server = MlflowServer(database.uri, database.root / "artifacts", database.root / "mlflow-server.log")
    try:
        database.start()
        started = time.monotonic()
        server.start()
        print(
            f"backend: {database.uri}\nMLFLOW_TRACKING_URI={server.uri}  (ready in {time.monotonic() - started:.1f} s)"
        )
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        database.stop()
