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


# Tiny pipeline params (tests/test_team.py, the DVC part of the benchmark): seconds per stage.
TINY = {
    "window": {"input_width": 48, "horizon": 12},
    "features": {"calendar": ["time_of_day"], "reference": "auto", "reference_season": None},
    "baselines": {"seasons": [48]},
    "train": {"epochs": 1, "batch_size": 128, "patience": 1, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
    "backtest": {"origins": 0},  # the validation split decides: folds are not what is shared
}
WRITERS = 8
RUNS_PER_WRITER = 25
METRICS_PER_RUN = 10


def write_runs(uri: str, experiment: str, runs: int, writer: int) -> dict:
    """One writer: `runs` runs of params, a tag and METRICS_PER_RUN metrics each; what failed."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, experiment)
    done, errors, started = 0, [], time.perf_counter()
    for k in range(runs):
        try:
            run = client.create_run(experiment_id, run_name=f"writer{writer}-{k}")
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(f"m{i}", float(i + k), now, 0) for i in range(METRICS_PER_RUN)],
                params=[Param("writer", str(writer)), Param("k", str(k))],
                tags=[RunTag("bench.writer", str(writer))],
            )
            client.set_terminated(run.info.run_id)
            done += 1
        except Exception as err:  # counted and reported: where the store stops holding
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    return {"runs": done, "errors": errors, "seconds": time.perf_counter() - started}


def _experiment(client, name: str) -> str:
    """The experiment's id, created by whichever writer comes first."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        return client.get_experiment_by_name(name).experiment_id


def load(uri: str, writers: int = WRITERS, runs: int = RUNS_PER_WRITER) -> dict:
    """`writers` processes writing at once: runs/s sustained, and every run and metric counted."""
    import json

    from mlflow import MlflowClient

    experiment = f"load-{int(time.time())}"
    _experiment(MlflowClient(tracking_uri=uri), experiment)  # not part of the timed load
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.team", "writer", uri, experiment, str(runs), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for i in range(writers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        results.append(json.loads(last) if last.startswith("{") else {"runs": 0, "errors": [err]})
    wall = time.perf_counter() - started
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], max_results=50000
    )
    metrics = sum(len(r.data.metrics) for r in found)
    finished = sum(r.info.status == "FINISHED" for r in found)
    written = sum(r["runs"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    return {
        "writers": writers,
        "runs_asked": writers * runs,
        "runs_written": written,
        "runs_found": len(found),
        "runs_finished": finished,
        "lost_runs": written - finished,
        "metrics_found": metrics,
        "lost_metrics": written * METRICS_PER_RUN - metrics,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall_seconds": wall,
        "runs_per_second": written / wall if wall else float("nan"),
    }


def sqlite_uri(folder: Path) -> str:
    """The project's default store in a folder: SQLite, WAL, 60 s busy timeout."""
    import sqlite3

    database = folder / "mlflow.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{database}").search_experiments()  # create schema
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("pragma journal_mode=wal")
    return f"sqlite:///{database}?timeout=60"


def dvc_sharing(servers: TeamServers, work: Path, params: dict) -> dict:
    """Cold `dvc repro` against the server, `dvc push`, then a second clone's pull + repro."""
    from benchmarks.repro import environment, git_copy

    env = {**environment(), **servers.env(), "SEQCAST_PREFECT": "off"}

    def run(where: Path, *args: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(args, cwd=where, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return time.perf_counter() - started

    repo = git_copy(work / "first", params)
    run(repo, "dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc")
    run(repo, "dvc", "remote", "modify", "team", "endpointurl", servers.s3_url)
    cold = run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "ran")
    push = run(repo, "dvc", "push")
    cache = sum(p.stat().st_size for p in (repo / ".dvc/cache").rglob("*") if p.is_file())
    files = sum(1 for p in (repo / ".dvc/cache").rglob("*") if p.is_file())
    clone = work / "second"
    run(work, "git", "clone", "-q", str(repo), str(clone))
    pull = run(clone, "dvc", "pull")
    started = time.perf_counter()
    done = subprocess.run(["dvc", "repro"], cwd=clone, env=env, capture_output=True, text=True)
    repro = time.perf_counter() - started
    ran = [ln for ln in done.stdout.splitlines() if ln.startswith("Running stage")]
    return {
        "cold_repro_seconds": cold,
        "push_seconds": push,
        "pushed_mb": cache / 1024 / 1024,
        "pushed_files": files,
        "pull_seconds": pull,
        "second_clone_repro_seconds": repro,
        "second_clone_stages_run": len(ran),
    }


def bench(
    work: Path, writers: int = WRITERS, runs: int = RUNS_PER_WRITER, dvc: bool = True
) -> dict:
    """The `team` section: server start times, load on PostgreSQL vs SQLite, DVC sharing."""
    from benchmarks.repro import environment

    reason = missing()
    if reason:
        return {"error": f"skipped: {reason}"}
    os.environ.update({k: v for k, v in environment().items() if k == "PATH"})
    servers = TeamServers(work / "servers")
    try:
        servers.start()
        result = {"start_seconds": dict(servers.seconds)}
        result["postgres"] = load(servers.tracking_uri, writers, runs)
        folder = work / "sqlite"
        folder.mkdir(parents=True, exist_ok=True)
        result["sqlite"] = load(sqlite_uri(folder), writers, runs)
        if dvc:
            result["dvc"] = dvc_sharing(servers, work / "dvc", TINY)
        return result
    finally:
        servers.close()


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows of the `team` section."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    rows: list[list[object]] = [
        [f"start {name}", seconds, "s"] for name, seconds in result["start_seconds"].items()
    ]
    for store in ("postgres", "sqlite"):
        r = result[store]
        rows += [
            [f"{store}: runs/s from {r['writers']} writers", r["runs_per_second"], "runs/s"],
            [
                f"{store}: runs lost / metrics lost / errors",
                f"{r['lost_runs']} / {r['lost_metrics']} / {r['errors']}",
                f"{r['runs_found']} of {r['runs_asked']} runs found; {r['first_error']}",
            ],
        ]
    if "dvc" in result:
        d = result["dvc"]
        rows += [
            ["cold dvc repro (tiny params, on the server)", d["cold_repro_seconds"], "s"],
            ["dvc push", d["push_seconds"], f"{d['pushed_mb']:.1f} MB, {d['pushed_files']} files"],
            ["second clone: dvc pull", d["pull_seconds"], "s"],
            [
                "second clone: dvc repro",
                d["second_clone_repro_seconds"],
                f"{d['second_clone_stages_run']} stages run",
            ],
        ]
    return ["team set-up", "value", "note"], rows


def main(argv: list[str]) -> int:
    """`python -m benchmarks.team writer URI EXPERIMENT RUNS INDEX`: one load writer."""
    import json

    if argv[:1] == ["writer"]:
        uri, experiment, runs, index = argv[1:5]
        print(json.dumps(write_runs(uri, experiment, int(runs), int(index))), flush=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
