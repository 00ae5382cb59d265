"""The team set-up on one machine: a throwaway PostgreSQL, moto's S3 and `mlflow server` on top.

`TeamServers` starts them (the tests in tests/test_team.py and the `team` benchmark share it);
`run_team` measures the tracking server under 8 concurrent writers against the SQLite default,
the servers' start times, and `dvc push` / `dvc pull` on the S3 remote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
BUCKET = "seqcast"
# moto accepts any credentials; boto3 and DVC only need some to be set.
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's layout), else None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file():
            return candidate
    return None


def missing() -> str | None:
    """Why the team servers cannot start here (a binary missing), else None."""
    if postgres_bin() is None:
        return "PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)"
    if not (BIN / "moto_server").exists():
        return f"moto_server not in {BIN} (the dev dependency moto[server]; run make env)"
    return None


def _wait(check, what: str, timeout: float, log: Path | None = None) -> None:
    """Poll check() until it is true; else fail naming what did not come up and its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s\n{tail}")


def _listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    """True when GET url answers 200."""
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.status == 200


@dataclass
class TeamServers:
    """PostgreSQL, moto's S3 and an MLflow tracking server, all on free local ports."""

    home: Path
    pg_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    mlflow_port: int = field(default_factory=free_port)
    seconds: dict[str, float] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _pg_data: Path | None = None

    @property
    def db_uri(self) -> str:
        """The backend store URI (MLflow needs the +psycopg2 driver spelled out)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/mlflow"

    @property
    def s3_url(self) -> str:
        """The S3 endpoint (MLFLOW_S3_ENDPOINT_URL, DVC's endpointurl)."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI of the tracking server."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def env(self) -> dict[str, str]:
        """What a client of the team set-up exports."""
        return {
            **AWS,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
        }

    def start(self) -> TeamServers:
        """Start all three; each start time lands in self.seconds."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_s3()
        self.start_mlflow()
        return self

    def start_postgres(self) -> None:
        """initdb + pg_ctl start in a temp dir; as `nobody` when we are root (initdb refuses)."""
        started = time.perf_counter()
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError(missing())
        # Under /tmp, not pytest's root-only tmp dir, so that `nobody` can reach it.
        self._pg_data = Path(tempfile.mkdtemp(prefix="seqcast-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._pg_data, "nobody")
            os.chmod(self._pg_data, 0o700)
            as_user = ["runuser", "-u", "nobody", "--"]
        data, log = self._pg_data / "data", self._pg_data / "server.log"
        subprocess.run(
            [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres"]
            + ["--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.pg_port} -k {self._pg_data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
            + ["-o", options, "start"],
            check=True,
            capture_output=True,
        )
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(
                host="127.0.0.1", port=self.pg_port, user="postgres", dbname="postgres"
            )
        ) as db:
            db.autocommit = True
            db.cursor().execute("create database mlflow")
        self.seconds["postgres"] = time.perf_counter() - started

    def start_s3(self) -> None:
        """moto's standalone S3 with the bucket the tracking server and DVC share."""
        import boto3

        started = time.perf_counter()
        log = self.home / "moto.log"
        self._procs["s3"] = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: _listening(self.s3_port), "moto_server", 60, log)
        client = boto3.client("s3", endpoint_url=self.s3_url, **boto_credentials())
        client.create_bucket(Bucket=BUCKET)
        self.seconds["s3"] = time.perf_counter() - started

    def start_mlflow(self) -> None:
        """`mlflow server` on PostgreSQL, artifacts proxied to the bucket (--serve-artifacts)."""
        started = time.perf_counter()
        log = self.home / "mlflow.log"
        # One attempt per S3 call: with the endpoint gone, fail in seconds, not after retries.
        env = {**os.environ, **AWS, "MLFLOW_S3_ENDPOINT_URL": self.s3_url, "AWS_MAX_ATTEMPTS": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self._procs["mlflow"] = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", self.db_uri]
            + ["--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts"]
            + ["--host", "127.0.0.1", "--port", str(self.mlflow_port), "--workers", "1"],
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _wait(lambda: _http_ok(f"{self.tracking_uri}/health"), "mlflow server", 180, log)
        self.seconds["mlflow"] = time.perf_counter() - started

    def stop(self, name: str) -> None:
        """Stop one server: "mlflow", "s3" or "postgres"."""
        if name == "postgres":
            self._stop_postgres()
            return
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            # mlflow server forks its workers into the session it leads.
            os.killpg(proc.pid, signal.SIGTERM) if name == "mlflow" else proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if name == "mlflow" else proc.kill()
            proc.wait(timeout=10)

    def _stop_postgres(self) -> None:
        """pg_ctl stop and remove its data dir."""
        if self._pg_data is None:
            return
        binaries = postgres_bin()
        as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(self._pg_data / "data")]
            + ["-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self._pg_data, ignore_errors=True)
        self._pg_data = None

    def close(self) -> None:
        """Stop everything this object started."""
        for name in ("mlflow", "s3", "postgres"):
            self.stop(name)


def boto_credentials() -> dict[str, str]:
    """boto3 client keyword arguments for moto."""
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }
