"""``rewardlab review [RUN]``: serve the review page on this machine (loopback by default)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import typer

from rewardlab.cli.app import app, console, err_console


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one, chosen by the system).

    :raises UserError: the address cannot be bound (taken, not this machine's)
    """
    from rewardlab.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port or --host") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _run_path(run: str, out: Path) -> str:
    """The page of ``run``: a stored run's id, or a ``rewardlab train`` run (its directory name, or
    ``train/NAME``, or a path to its directory) whose directory lives in ``out/train``.

    :raises UserError: no such run (the line names the latest ones)
    """
    from urllib.parse import quote

    from rewardlab.errors import UserError
    from rewardlab.review import data
    from rewardlab.store import DB_NAME, RunStore

    db = out / DB_NAME
    stored: list[str] = []
    if db.is_file():
        with RunStore(db) as store:
            if store.get_run(run) is not None:
                return f"runs/{quote(run)}"
            stored = [r.id for r in store.list_runs()[:3]]
    trained = data.train_runs(out)
    wanted = Path(run.rstrip("/")).name
    for train in trained:
        if train.name == wanted:
            return f"train/{quote(train.name)}"
    if not db.is_file() and not trained:
        raise UserError(f"no run store at {db} and no train run in {out / data.TRAIN_DIR}; "
                        "pass --out to where your runs are")
    known = ", ".join(stored + [f"train/{t.name}" for t in trained[:3]]) or "none"
    raise UserError(f"no run {run!r} in {db} or {out / data.TRAIN_DIR} (latest: {known})")


@app.command()
def review(run: str | None = typer.Argument(None, help="a run to open: a stored run's id, or a `rewardlab train` "
                                            "run's directory name or path (default: the list of runs)"),
           out: Path = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories"),
           host: str = typer.Option("127.0.0.1", help="address to listen on (loopback by default: the page can "
                                    "start LLM requests and training)"),
           port: int = typer.Option(0, min=0, max=65535, help="port (0: a free one, printed)"),
           provider: str | None = typer.Option(None, help="LLM provider of refines (default: the one of the "
                                               "generation run that made the program, else offline)"),
           model: str | None = typer.Option(None, help="model name (else the parent run's, else $REWARDLAB_MODEL)"),
           base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint (else the parent run's, "
                                               "else $OPENAI_BASE_URL)"),
           api_key: str | None = typer.Option(None, help="API key (else $OPENAI_API_KEY); never stored"),
           probe_steps: int | None = typer.Option(None, min=0, help="training steps of each revision's probe "
                                                  "(default: the parent run's; 0: the checks alone)")) -> None:
    """Serve the review page: lineage, code and diffs, curves, rollout videos, feedback that refines."""
    import uvicorn

    from rewardlab.review.app import ReviewSettings, create_app

    path = "" if run is None else _run_path(run, out)
    application = create_app(out, ReviewSettings(provider=provider, model=model, base_url=base_url, api_key=api_key,
                                                 probe_steps=probe_steps))
    if not is_loopback(host):
        err_console.print(f"warning: listening on {host}, not loopback: anyone who can reach this machine can read "
                          "your runs and start refines (LLM requests, training)", markup=False, highlight=False)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/{path}"
    console.print(f"rewardlab review: serving {url} (Ctrl-C stops it)", markup=False, highlight=False, soft_wrap=True)
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    running = [job for job in application.state.jobs.all() if job.status == "running"]
    if running:  # the refine thread is finished before the process exits: its run ends done or failed, never stuck
        err_console.print(f"waiting for refine #{running[0].id} of {running[0].parent_id[:12]} to finish "
                          "(Ctrl-C again stops at once)", markup=False, highlight=False)
