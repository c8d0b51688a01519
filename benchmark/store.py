"""Where runs are recorded: the MLflow tracking store, the experiment a run goes to, and the pre-flight check.

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (the card's ``mlruns/``
layout); ``MLFLOW_TRACKING_URI`` overrides (e.g. ``http://mlflow.example.org:5000``, a shared ``mlflow server``).

``check`` is the pre-flight every command runs before any work: one bounded round trip to the store
(``MUSICBENCH_STORE_TIMEOUT`` seconds, default 10, one attempt). A store that cannot be used — nothing listening,
a server that accepts and never answers, an unknown host, an HTTP error, a read-only or corrupt sqlite file, an
unreachable database — raises ``StoreError``: one line naming the store and the cause, which the command line
prints with exit status 2. MLflow's own retry policy (7 retries with backoff, 120 s per request: minutes) is left
as it is for the run itself, where riding out a restarting server is what a long run wants; set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` to change it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: seconds the pre-flight waits for the store, unless ``MUSICBENCH_STORE_TIMEOUT`` says otherwise
DEFAULT_CHECK_TIMEOUT = 10
#: database URI schemes (SQLAlchemy dialects) that MLflow opens itself, without a server
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


class StoreError(Exception):
    """The tracking store cannot be used; the message is one line naming the store (password hidden) and why."""


def default_tracking_uri() -> str:
    return "sqlite:///" + str((Path.cwd() / "mlruns" / "mlflow.db").resolve())


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def shown_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (it goes into messages and logs)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def check_timeout() -> int:
    """``MUSICBENCH_STORE_TIMEOUT`` (seconds, rounded up; default 10): how long the pre-flight waits."""
    text = os.environ.get("MUSICBENCH_STORE_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_CHECK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise StoreError(f"MUSICBENCH_STORE_TIMEOUT={text!r}: expected a positive number of seconds")
    return max(1, math.ceil(value))


#: tags of an experiment musicbench creates: the MLflow UI's experiment type (the tag its own type selector sets), so
#: a new user lands on the runs table of a model-comparison experiment, not on an empty GenAI overview
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
#: where ``resolve_experiment`` found the experiment, for messages
EXPERIMENT_SOURCES = ("--experiment", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "mlflow run", "default")


def resolve_experiment(given: str | None, default: str = "musicbench") -> tuple[str, str]:
    """The one rule for the experiment a run goes to: ``(name, source)``.

    ``--experiment`` when given, else ``$MLFLOW_EXPERIMENT_NAME``, else ``$MLFLOW_EXPERIMENT_ID`` (its name, looked up
    in the store), else the experiment of the run an enclosing ``mlflow run`` started (``$MLFLOW_RUN_ID``; ``mlflow
    run`` also sets ``$MLFLOW_EXPERIMENT_ID`` to it), else ``default`` ("musicbench"). Raises ``ValueError`` for an
    empty name or an experiment id the store does not know. The store is asked only for an id.
    """
    if given is not None and str(given).strip():
        return experiment_name(given), "--experiment"
    if os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip():
        return experiment_name(os.environ["MLFLOW_EXPERIMENT_NAME"]), "MLFLOW_EXPERIMENT_NAME"
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    source = "MLFLOW_EXPERIMENT_ID"
    if not experiment_id and os.environ.get("MLFLOW_RUN_ID", "").strip():
        source = "mlflow run"
    if experiment_id or source == "mlflow run":
        import mlflow
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(tracking_uri())
        client = mlflow.tracking.MlflowClient()
        try:
            if not experiment_id:
                experiment_id = client.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id
            return client.get_experiment(experiment_id).name, source
        except MlflowException as error:
            raise ValueError(f"{source}={experiment_id or os.environ['MLFLOW_RUN_ID']}: {error.message}") from None
    return default, "default"


def experiment_name(name: str | None) -> str:
    """A usable MLflow experiment name (stripped), or ``ValueError`` saying why not."""
    text = (name or "").strip()
    if not text:
        raise ValueError("the experiment name is empty")
    return text


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local sqlite store across processes.

    MLflow creates and migrates the tables on first use; two runs starting at once on a fresh store would both
    migrate and one would crash (alembic "expected to match one row"), and both could create the same
    experiment. A lock file next to the database makes the second one wait a moment instead.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(uri[len("sqlite:///") :] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configure(experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created under mlruns/ when missing).

    Two processes creating the same experiment at once on a shared server: the one that loses the race finds the
    winner's experiment instead of failing.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    experiment = experiment_name(experiment)
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        artifact_location = None  # other stores: the server's default artifact root (proxied: mlflow-artifacts:/)
        if uri.startswith("sqlite:///"):  # keep artifacts beside the database (mlruns/artifacts by default)
            artifact_location = (Path(uri[len("sqlite:///") :]).parent / "artifacts" / experiment).resolve().as_uri()
        try:
            return mlflow.create_experiment(experiment, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
        except MlflowException:
            found = mlflow.get_experiment_by_name(experiment)  # created meanwhile by another client
            if found is None:
                raise
            return found.experiment_id


# --- the pre-flight -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_migrations() -> Iterator[None]:
    """No "Creating initial MLflow database tables..." lines when the pre-flight is the first to touch a new store:
    a command refused for another reason right after it must still print one line."""
    import logging

    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


@contextlib.contextmanager
def _bounded_http(timeout: int) -> Iterator[None]:
    """MLflow's HTTP client, for the pre-flight only: one attempt, ``timeout`` seconds to connect and to answer."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        nested = error.__cause__ or error.__context__
        if nested is None or id(nested) in seen:
            return error
        seen.add(id(nested))
        error = nested


def cause(error: BaseException, timeout: int | None = None) -> str:
    """Why a store call failed, in a few words: the innermost exception of the chain, first line only."""
    import socket

    inner = _innermost(error)
    if isinstance(inner, (TimeoutError, socket.timeout)) or "timed out" in str(inner).lower():
        return f"no answer within {timeout} s" if timeout else "timed out"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(inner, socket.gaierror):
        return f"unknown host ({inner.strerror or inner})"
    if isinstance(inner, OSError) and inner.strerror:
        where = f": {inner.filename}" if inner.filename else ""
        return f"{inner.strerror}{where}"
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    text = lines[0] if lines else type(inner).__name__
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= 300 else text[:297] + "..."


def _check_sqlite(path: Path, write: bool, timeout: int) -> None:
    """A corrupt database file or a store that cannot be written, caught before MLflow tries (and retries)."""
    import sqlite3

    if path.exists():
        if not path.is_file():
            raise StoreError(f"not a file: {path}")
        if write and not os.access(path, os.W_OK):
            raise StoreError(f"read-only: cannot write {path}")
        try:
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout)) as db:
                db.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"{error} ({path}; not an MLflow sqlite store, or a damaged one?)") from None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if write and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"read-only: cannot write in {folder}")


def _check_artifact_root(location: str | None) -> None:
    """An experiment whose artifacts go to a local folder that cannot be written (a proxied or remote root is the
    server's to check)."""
    if not location or not location.startswith("file:"):
        return
    from urllib.request import url2pathname

    folder = Path(url2pathname(urlsplit(location).path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"read-only artifact folder: cannot write in {folder}")


def _check_database(uri: str, timeout: int) -> None:
    """A bounded connection to a database that MLflow would otherwise retry for about 100 s."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args={"connect_timeout": timeout})
        with engine.connect():
            pass
    except Exception as error:  # noqa: BLE001 - any failure to connect is the store's; one line says which
        raise StoreError(cause(error, timeout)) from None


def check(experiment: str | None = None, write: bool = True) -> str | None:
    """The pre-flight: can this process use the tracking store? Bounded; raises ``StoreError`` (one line).

    With ``experiment``, it is found or created (as ``configure`` does) and its id returned; under ``mlflow run``
    (``MLFLOW_RUN_ID`` set) the run MLflow started is looked up instead. Without, one cheap read. ``write``: also
    refuse a local store that cannot be written (a read-only file or folder).
    """
    import mlflow

    if experiment is not None:
        experiment = experiment_name(experiment)  # ValueError: the caller's usage error
    uri = tracking_uri()
    where = f"tracking store {shown_uri(uri)}"
    try:
        timeout = check_timeout()
    except StoreError as error:
        raise StoreError(f"{where}: {error}") from None
    try:
        scheme = uri.partition(":")[0].partition("+")[0].lower()
        if uri.startswith("sqlite:///"):
            _check_sqlite(Path(uri[len("sqlite:///") :].partition("?")[0]), write, timeout)
        elif scheme in _DATABASE_SCHEMES:
            _check_database(uri, timeout)
        with _bounded_http(timeout), _quiet_migrations():
            mlflow.set_tracking_uri(uri)
            if experiment is not None and os.environ.get("MLFLOW_RUN_ID"):
                mlflow.tracking.MlflowClient().get_run(os.environ["MLFLOW_RUN_ID"])
                return None
            if experiment is not None:
                experiment_id = configure(experiment)
                if write:
                    _check_artifact_root(mlflow.get_experiment(experiment_id).artifact_location)
                return experiment_id
            mlflow.tracking.MlflowClient().search_experiments(max_results=1)
            return None
    except StoreError as error:
        raise StoreError(f"{where}: {error}") from None
    except Exception as error:  # noqa: BLE001 - whatever the store raised, one line names it
        raise StoreError(f"{where}: {cause(error, timeout)}") from None


def check_resolved(given: str | None, write: bool = True) -> str:
    """``resolve_experiment`` then ``check`` on it: the experiment's name, after the bounded pre-flight. An experiment
    id to look up is looked up after a bounded read of the store; an unknown one is a ``StoreError`` (one line)."""
    needs_store = not (given or os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip()) and (
        os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip() or os.environ.get("MLFLOW_RUN_ID", "").strip()
    )
    if needs_store:
        check(None, write=False)
    try:
        name, _ = resolve_experiment(given)
    except ValueError as error:
        raise StoreError(f"tracking store {shown_uri(tracking_uri())}: {error}") from None
    check(name, write=write)
    return name
