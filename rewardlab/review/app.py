"""The review web app (FastAPI, server-rendered jinja2 templates, no front-end build): look at what a
reward made the robot do, say what is wrong with it, and get a revised version (Text2Reward's
human-feedback loop: previous code + observed behaviour + feedback -> new code).

Pages: ``/`` (runs), ``/runs/{run}`` (a generation's lineage trees and candidates, or an experiment's
trials with success and returns over seeds), ``/programs/{id}`` (code, diff against the parent, curves,
preference check, rollout videos, feedback form, feedback history), ``/compare?a=&b=``, ``/jobs/{n}``
(a background refine's status; the page refreshes itself until it ends). Files under
``/runs/{run}/files/...`` are served only from inside the run's directory.

The app reads the store through its typed records and writes only through the library's
:func:`~rewardlab.text2reward.loop.refine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from rewardlab.errors import UserError
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

    :raises UserError: there is no run store at ``out``
    """
    out = Path(out)
    db = out / DB_NAME
    if not db.is_file():
        raise UserError(f"no run store at {db}; pass --out to where your runs are")
    settings = settings or ReviewSettings()
    jobs = RefineJobs(out)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(title="rewardlab review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(fmt=_fmt, pref=data.preference_summary)
    code_css = data.highlight_css()
    app.state.jobs = jobs

    def store() -> RunStore:
        return RunStore(db)  # one connection per request: requests run in a thread pool

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"out": out, **context}, status_code=status_code)

    @app.exception_handler(data.NotFound)
    async def not_found(request: Request, exc: data.NotFound) -> HTMLResponse:
        return page(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> HTMLResponse:
        return page(request, "error.html", 400, title="Cannot do that", message=str(exc))

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
        with store() as s:
            runs = [(run, data.run_meta(run)) for run in s.list_runs()]
        return page(request, "index.html", runs=runs, jobs=jobs.all())

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        with store() as s:
            run = data.get_run(s, run_id)
            meta = data.run_meta(run)
            run_dir = out / run.id
            files = sorted(p.name for p in run_dir.iterdir() if p.is_file()) if run_dir.is_dir() else []
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

    @app.get("/programs/{program_id}", response_class=HTMLResponse)
    def program_page(request: Request, program_id: str) -> HTMLResponse:
        from rewardlab.text2reward.loop import FEEDBACK_TAGS

        with store() as s:
            view = data.program_view(s, program_id, out)
            history = data_feedback(s, view.record.id)
            note = _refine_note(s, view.record.id, settings)
        code = data.highlight_python(view.record.source)
        diff = ""
        if view.parent is not None:
            diff = data.highlight_diff(data.diff_lines(view.parent.source, view.record.source,
                                                       view.parent.id[:12], view.record.id[:12]) or " (same code)\n")
        return page(request, "program.html", view=view, code=code, diff=diff, history=history, tags=FEEDBACK_TAGS,
                    provider_note=note)

    @app.post("/programs/{program_id}/feedback")
    def feedback(request: Request, program_id: str, text: str = Form(""), tags: list[str] = Form([]),
                 observed: str = Form("")) -> Response:
        from rewardlab.text2reward.loop import refine_settings

        _same_origin(request)
        with store() as s:
            record = data.get_program(s, program_id)
            if not text.strip() and not tags:
                raise UserError("the feedback is empty: say what should change (or tick a tag)")
            config, note = refine_settings(s, record.id, **_given(settings))
        job = jobs.submit(record.id, text, tags, config, note, observed=observed.strip() or None)
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
        path = rollout_video(source.trial_dir, source.card, source.algo, source.seed)
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


def _refine_note(store: RunStore, program_id: str, settings: ReviewSettings) -> str:
    """Which provider a refine of the program would ask, in words (or why none can be asked)."""
    from rewardlab.text2reward.loop import refine_settings
    from rewardlab.text2reward.providers import check_provider

    try:
        config, note = refine_settings(store, program_id, **_given(settings))
        check_provider(config)
    except UserError as e:
        return f"no endpoint configured: {e}. Feedback sent now is stored, and nothing is asked."
    except ValueError as e:
        return f"the refine settings are invalid: {e}"
    return note


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}g}"
