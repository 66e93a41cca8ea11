"""The review web app (FastAPI, server-rendered jinja2 templates, no front-end build): look at what a
reward made the robot do, say what is wrong with it, and get a revised version (Text2Reward's
human-feedback loop: previous code + observed behaviour + feedback -> new code).

Pages: ``/`` (runs), ``/runs/{run}`` (a generation's or refine's lineage trees and candidates, an
experiment's trials with success and returns over seeds, a domain randomisation proposal's ranges),
``/train/{name}`` (a ``rewardlab train`` run, read from its directory ``<out>/train/<name>``: it is not in
the store), ``/programs/{id}`` (code, diff against the parent, curves,
preference check, rollout videos, feedback form, feedback history), ``/compare?a=&b=``, ``/jobs/{n}``
(a background refine's status; the page refreshes itself until it ends). Files under
``/runs/{run}/files/...`` are served only from inside the run's directory.

The app reads the store through its typed records and writes only through the library's
:func:`~rewardlab.text2reward.loop.refine`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from rewardlab.errors import UserError, one_line
from rewardlab.review import data
from rewardlab.review.jobs import RefineJobs
from rewardlab.store import DB_NAME, RunStore

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ReviewSettings:
    """How the page's refines reach a model; ``None`` fields come from the parent's generation run
    (:func:`rewardlab.text2reward.loop.refine_settings`).

    :param probe_steps: training steps of each revision's probe (0: rank by the checks alone)
    """

    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    probe_steps: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None


def create_app(out: Path, settings: ReviewSettings | None = None) -> FastAPI:
    """The review app over the runs root ``out`` (its ``rewardlab.sqlite`` and run directories).

    :raises UserError: there is neither a run store nor a train run at ``out``
    """
    out = Path(out)
    db = out / DB_NAME
    if not db.is_file() and not data.train_runs(out):
        raise UserError(f"no run store at {db} and no train run in {out / data.TRAIN_DIR}; "
                        "pass --out to where your runs are")
    settings = settings or ReviewSettings()
    jobs = RefineJobs(out)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(title="rewardlab review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(fmt=_fmt, pref=data.preference_summary, kinds=data.RUN_KINDS, kind=data.run_kind)
    code_css = data.highlight_css()
    app.state.jobs = jobs

    def store() -> RunStore:
        if not db.is_file():  # only train runs so far: never create an empty store by reading
            raise data.NotFound(f"no run store at {db} yet (only `rewardlab train` runs, which live in "
                                f"{out / data.TRAIN_DIR})")
        return RunStore(db)  # one connection per request: requests run in a thread pool

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"out": out, **context}, status_code=status_code)

    @app.exception_handler(data.NotFound)
    async def not_found(request: Request, exc: data.NotFound) -> HTMLResponse:
        return page(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> HTMLResponse:
        return page(request, "error.html", 400, title="Cannot do that", message=str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return page(request, "error.html", 400, title="Bad request", message=_validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        title = "Not found" if exc.status_code == 404 else f"Error {exc.status_code}"
        message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", exc.status_code, title=title, message=message)

    @app.get("/code.css")
    def css() -> Response:
        return Response(code_css, media_type="text/css")

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        runs = []
        if db.is_file():
            with store() as s:
                runs = [(run, data.run_meta(run)) for run in s.list_runs()]
        # one list, newest first: stored runs and `rewardlab train` runs (read from their directories)
        rows: list[tuple[str, Any, Any]] = [(run.created, run, meta) for run, meta in runs]
        rows += [(train.created, train, None) for train in data.train_runs(out)]
        rows.sort(key=lambda row: row[0], reverse=True)
        return page(request, "index.html", rows=rows, jobs=jobs.all())

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        with store() as s:
            run = data.get_run(s, run_id)
            meta = data.run_meta(run)
            run_dir = out / run.id
            files = sorted(p.name for p in run_dir.iterdir() if p.is_file()) if run_dir.is_dir() else []
            if data.run_kind(run) == "randomize":
                ranges = run_dir / "ranges.yaml"
                return page(request, "run_randomize.html", run=run, meta=meta, files=files,
                            ranges=ranges.read_text() if ranges.is_file() else None)
            if run.spec_name == "generate":
                trees = data.run_trees(s, run.id)
                cands = s.candidates(run.id)
                feedback = [f for f in data_feedback(s) if f.run_id == run.id]
                return page(request, "run_generation.html", run=run, meta=meta, trees=trees, candidates=cands,
                            files=files, feedback=feedback)
            trainings = data.experiment_trainings(s, run.id, out)
            summary = data.seed_summary(s, run.id)
            trials = s.trials(run.id)
        return page(request, "run_experiment.html", run=run, meta=meta, trainings=trainings, summary=summary,
                    trials=trials, files=files)

    @app.get("/train/{name}", response_class=HTMLResponse)
    def train_page(request: Request, name: str) -> HTMLResponse:
        run = data.get_train_run(out, name)
        program = None
        if run.result.reward_sha256 and db.is_file():
            with store() as s:
                program = s.get_program(run.result.reward_sha256)
        return page(request, "run_train.html", run=run, training=run.training(), files=run.files(), program=program)

    @app.get("/train/{name}/curves.svg")
    def train_curves(name: str) -> Response:
        from rewardlab.review.plots import curves_svg

        return Response(curves_svg(data.get_train_run(out, name).result.curve), media_type="image/svg+xml")

    @app.get("/train/{name}/video.webm")
    def train_video(name: str) -> FileResponse:
        from rewardlab.review.video import has_model, rollout_video

        run = data.get_train_run(out, name)
        if not has_model(run.path) or not run.result.algo or not run.card:
            raise data.NotFound(f"train run {name} left no model (or no card) to render")
        path = rollout_video(run.path, run.card, run.result.algo, int(run.settings.get("seed", 0) or 0),
                             simulator=data.card_simulator(run.card))
        return FileResponse(path, media_type="video/webm")

    @app.get("/train/{name}/files/{relative:path}")
    def train_file(name: str, relative: str) -> FileResponse:
        run = data.get_train_run(out, name)
        target = data.inside_run(out / data.TRAIN_DIR, run.name, relative)
        if not target.is_file():
            raise data.NotFound(f"no file {relative!r} in train run {name}")
        return FileResponse(target)

    @app.get("/programs/{program_id}", response_class=HTMLResponse)
    def program_page(request: Request, program_id: str) -> HTMLResponse:
        from rewardlab.text2reward.loop import FEEDBACK_TAGS

        with store() as s:
            view = data.program_view(s, program_id, out)
            history = data_feedback(s, view.record.id)
            provider = _provider(s, view.record.id, settings)
        code = data.highlight_python(view.record.source)
        diff = ""
        if view.parent is not None:
            diff = data.highlight_diff(data.diff_lines(view.parent.source, view.record.source,
                                                       view.parent.id[:12], view.record.id[:12]) or " (same code)\n")
        return page(request, "program.html", view=view, code=code, diff=diff, history=history, tags=FEEDBACK_TAGS,
                    provider=provider)

    @app.post("/programs/{program_id}/feedback")
    def feedback(request: Request, program_id: str, text: str = Form(""), tags: list[str] = Form([]),
                 observed: str = Form("")) -> Response:
        from rewardlab.text2reward.loop import refine_settings

        _same_origin(request)
        with store() as s:
            record = data.get_program(s, program_id)
            if not text.strip() and not tags:
                raise UserError("the feedback is empty: say what should change (or tick a tag)")
            provider = _provider(s, record.id, settings)
            config, _ = refine_settings(s, record.id, **_given(settings))
        job = jobs.submit(record.id, text, tags, config, provider.note, observed=observed.strip() or None,
                          problem=provider.problem, warning=provider.warning)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        job = jobs.get(job_id)
        if job is None:
            raise data.NotFound(f"no refine job {job_id} (jobs live as long as the server)")
        return page(request, "job.html", job=job)

    @app.get("/jobs/{job_id}/status")
    def job_status(job_id: int) -> JSONResponse:
        job = jobs.get(job_id)
        if job is None:
            raise data.NotFound(f"no refine job {job_id}")
        return JSONResponse({"status": job.status, "message": job.message, "child": job.child_id,
                             "lines": job.lines[-20:]})

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, a: str, b: str) -> HTMLResponse:
        with store() as s:
            left, right = data.program_view(s, a, out), data.program_view(s, b, out)
        diff = data.highlight_diff(data.diff_lines(left.record.source, right.record.source, left.record.id[:12],
                                                   right.record.id[:12]) or " (same code)\n")
        return page(request, "compare.html", left=left, right=right, diff=diff,
                    left_code=data.highlight_python(left.record.source),
                    right_code=data.highlight_python(right.record.source))

    @app.get("/runs/{run_id}/curves/{rel_dir:path}.svg")
    def curves(run_id: str, rel_dir: str) -> Response:
        from rewardlab.review.plots import curves_svg

        with store() as s:
            result = data.stored_result(s, out, run_id, rel_dir)
        return Response(curves_svg(result.curve), media_type="image/svg+xml")

    @app.get("/runs/{run_id}/video/{rel_dir:path}.webm")
    def video(run_id: str, rel_dir: str) -> FileResponse:
        from rewardlab.review.video import rollout_video

        with store() as s:
            source = data.video_source(s, out, run_id, rel_dir)
        path = rollout_video(source.trial_dir, source.card, source.algo, source.seed, simulator=source.simulator)
        return FileResponse(path, media_type="video/webm")

    @app.get("/runs/{run_id}/files/{relative:path}")
    def run_file(run_id: str, relative: str) -> FileResponse:
        with store() as s:
            data.get_run(s, run_id)
        target = data.inside_run(out, run_id, relative)
        if not target.is_file():
            raise data.NotFound(f"no file {relative!r} in run {run_id}")
        return FileResponse(target)

    return app


def _same_origin(request: Request) -> None:
    """Refuse a form posted from another site (a page elsewhere must not start refines here): browsers
    send ``Origin`` with a cross-site POST, and it must name this server."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise UserError(f"a form from {origin} cannot start a refine here; use the page itself")


def data_feedback(store: RunStore, program_id: str | None = None) -> list[Any]:
    from rewardlab.text2reward.loop import feedback_history

    return feedback_history(store, program_id)


def _given(settings: ReviewSettings) -> dict[str, Any]:
    return {"provider": settings.provider, "model": settings.model, "base_url": settings.base_url,
            "api_key": settings.api_key, "probe_steps": settings.probe_steps, "timeout_s": settings.timeout_s,
            "max_retries": settings.max_retries}


#: What a reviewer can do about a missing endpoint, from the page (the server's settings are fixed when
#: it starts, so the page can only say how to restart it).
RESTART = ("restart `rewardlab review` with --provider openai --model NAME --base-url URL (or set REWARDLAB_MODEL, "
           "OPENAI_BASE_URL and, for a hosted API, OPENAI_API_KEY before starting it)")
#: Said before and after a refine the offline baseline answers: it cannot read the feedback.
OFFLINE_WARNING = ("the offline baseline cannot read feedback: it returns the next-ranked hand-written reference "
                   "program (with a comment saying so), whatever you write; for real revisions " + RESTART)


@dataclass(frozen=True)
class ProviderState:
    """Who a refine of a program would ask, as the page says it.

    :param note: the provider and where its settings came from (:func:`~rewardlab.text2reward.loop.refine_settings`)
    :param problem: why nothing can be asked, with what to do from the page (``None``: it can be asked)
    :param warning: what the reviewer must know before writing (the offline baseline reads no feedback)
    """

    note: str
    problem: str | None = None
    warning: str | None = None


def _provider(store: RunStore, program_id: str, settings: ReviewSettings) -> ProviderState:
    """Which provider a refine of the program would ask (or why none can be asked), in words."""
    from rewardlab.text2reward.loop import refine_settings
    from rewardlab.text2reward.providers import check_provider

    try:
        config, note = refine_settings(store, program_id, **_given(settings))
    except (UserError, ValueError) as e:
        return ProviderState("none", problem=f"the refine settings are invalid: {one_line(str(e))}; {RESTART}")
    try:
        check_provider(config)
    except UserError as e:
        reason = re.split(r"[:;]", str(e), maxsplit=1)[0].strip()  # the cause; its CLI advice does not apply here
        return ProviderState(note, problem=f"no endpoint configured: {reason}. Feedback sent now is stored, and "
                                           f"nothing is asked; {RESTART}")
    return ProviderState(note, warning=OFFLINE_WARNING if config.provider == "offline" else None)


def _validation_line(exc: RequestValidationError) -> str:
    """A request FastAPI could not validate, as one line (``missing query parameter 'b'``)."""
    parts = []
    for error in exc.errors():
        loc = [str(x) for x in error.get("loc", ())]
        where = {"query": "query parameter", "path": "path part", "body": "form field"}.get(loc[0] if loc else "",
                                                                                          "parameter")
        name = loc[-1] if len(loc) > 1 else "?"
        if error.get("type") == "missing":
            parts.append(f"missing {where} {name!r}")
        else:
            parts.append(f"{where} {name!r}: {error.get('msg', 'invalid')}")
    return "bad request: " + ("; ".join(parts) or "invalid parameters")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}g}"
