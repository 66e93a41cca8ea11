"""The review web page (rewardlab/review/): served by the real ``rewardlab review`` command over real
HTTP, walked in a real headless Chromium (selenium and the system's chromium-driver), refining through
the real ``openai`` client against the scripted OpenAI-compatible server on 127.0.0.1.

The runs it reviews are made by the library: a generation on InvertedPendulum whose probe trains PPO for
one rollout (1024 steps), so there is a model to render, curves and a preference check."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_server import PENDULUM, ScriptedLLMServer

from rewardlab.store import DB_NAME, RunStore
from rewardlab.text2reward.loop import GenerationConfig, feedback_history, generate

pytestmark = pytest.mark.slow

#: the revision the scripted model sends back for human feedback: a heavier effort penalty
REVISED = PENDULUM.replace("0.001", "0.02")
FEEDBACK = "the cart pushes far too hard; make effort cost more"


def _answer(body: dict[str, Any]) -> tuple[Any, ...]:
    last = str(body["messages"][-1]["content"])
    return ("code", REVISED if FEEDBACK in last else PENDULUM)


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(default=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLMServer) -> tuple[Path, str, str]:
    """A runs root with one LLM generation whose probe trained a policy: ``(out, run id, program id)``."""
    out = tmp_path_factory.mktemp("review") / "runs"
    cfg = GenerationConfig(provider="openai", model="scripted-model", base_url=llm.base_url, api_key="test", samples=1,
                           rounds=1, probe_steps=1024, eval_episodes=2, use_memory=False, max_retries=0, timeout_s=30.0)
    result = generate("mujoco/InvertedPendulum-v5", cfg, out=out)
    assert result.best_program_id is not None and result.status == "done"
    return out, result.run_id, result.best_program_id


class Server:
    """``rewardlab review`` in a child process; ``url`` is what it printed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "rewardlab", "review", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"rewardlab review printed nothing; stderr: {self.proc.stderr.read()}") from None  # type: ignore[union-attr]
        match = re.search(r"serving (http://\S+?)/(\S*) ", first)
        assert match, first
        self.url, self.printed = match.group(1), first
        self.port = int(self.url.rsplit(":", 1)[1])

    def get(self, raw_path: str) -> tuple[int, str]:
        """GET a path sent exactly as written (http.client normalises nothing)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", raw_path)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        conn.close()
        return response.status, body

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def server(generated: tuple[Path, str, str]) -> Iterator[Server]:
    out, run_id, _ = generated
    srv = Server(run_id, "--out", str(out), "--port", "0")
    yield srv
    srv.stop()


def test_videos_render_with_osmesa_where_egl_cannot_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardlab.review.video import gl_backend

    monkeypatch.setenv("MUJOCO_GL", "glfw")
    assert gl_backend() == "glfw"  # a backend chosen on purpose is kept
    monkeypatch.setenv("MUJOCO_GL", "egl")
    gpu = Path("/dev/dri").exists() or Path("/dev/nvidia0").exists()
    assert gl_backend() == ("egl" if gpu else "osmesa")


def test_it_serves_on_loopback_a_free_port_and_prints_it(server: Server, generated: tuple[Path, str, str]) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    assert f"/runs/{generated[1]}" in server.printed
    status, body = server.get("/")
    assert status == 200 and generated[1] in body


def test_unknown_ids_get_a_clear_404_page(server: Server) -> None:
    for path, says in [("/programs/abcdef123456", "no reward program with id 'abcdef123456'"),
                       ("/programs/not-an-id", "ids are 6 to 64 hex characters"),
                       ("/runs/no-such-run", "no run 'no-such-run'"),
                       ("/runs/no-such-run/files/x.py", "no run 'no-such-run'"),
                       ("/jobs/999", "no refine job 999"),
                       ("/compare?a=abcdef123456&b=abcdef654321", "no reward program"),
                       ("/nowhere", "no page at /nowhere")]:
        status, body = server.get(path)
        assert status == 404, path
        assert says in body.replace("&#39;", "'"), (path, body[-600:])
        assert "Traceback" not in body


def test_files_outside_the_run_directory_are_refused(server: Server, generated: tuple[Path, str, str]) -> None:
    out, run_id, _ = generated
    (out / "secret.txt").write_text("not for the page")
    os.symlink(out / "secret.txt", out / run_id / "link-out.txt")
    status, body = server.get(f"/runs/{run_id}/files/best_reward.py")
    assert status == 200 and "compute_dense_reward" in body  # a file of the run is served
    for path in [f"/runs/{run_id}/files/../secret.txt", f"/runs/{run_id}/files/../../etc/passwd",
                 f"/runs/{run_id}/files/%2e%2e/secret.txt", f"/runs/{run_id}/files/..%2fsecret.txt",
                 f"/runs/{run_id}/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd", f"/runs/{run_id}/files/%2fetc%2fpasswd",
                 f"/runs/{run_id}/files//etc/passwd", f"/runs/{run_id}/files/link-out.txt",
                 "/runs/..%2f..%2fetc/files/passwd", f"/runs/{run_id}/files/r0-s0/..%2f..%2f..%2fsecret.txt",
                 f"/runs/{run_id}/video/..%2f..%2fsecret.webm", f"/runs/{run_id}/curves/..%2f..%2fx.svg"]:
        status, body = server.get(path)
        assert status in (400, 404), path
        assert "not for the page" not in body and "root:x:" not in body, path


def test_binding_to_another_address_says_so(generated: tuple[Path, str, str]) -> None:
    srv = Server("--out", str(generated[0]), "--host", "0.0.0.0", "--port", "0")
    try:
        assert srv.get("/")[0] == 200
    finally:
        err = srv.stop()
    assert "warning: listening on 0.0.0.0, not loopback" in err


def test_bad_command_lines_are_one_line(generated: tuple[Path, str, str], tmp_path: Path) -> None:
    import socket

    def review(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rewardlab", "review", *args], capture_output=True, text=True,
                              timeout=120)

    unknown = review("nope", "--out", str(generated[0]))
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no run 'nope'")
    empty = review("--out", str(tmp_path))
    assert empty.returncode == 2 and empty.stderr.startswith(f"error: no run store at {tmp_path / DB_NAME}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = review("--out", str(generated[0]), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr and "--port" in busy.stderr
    for done in (unknown, empty, busy):
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_feedback_with_no_endpoint_is_kept_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program the offline baseline wrote, a page told to use an OpenAI endpoint with no model or URL:
    the page says so before anything is sent, and feedback sent anyway is stored with the reason."""
    from fastapi.testclient import TestClient

    from rewardlab.review.app import ReviewSettings, create_app

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "REWARDLAB_MODEL"):
        monkeypatch.delenv(name, raising=False)
    cfg = GenerationConfig(provider="offline", samples=1, rounds=1, probe_steps=0, use_memory=False)
    pid = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path).best_program_id
    assert pid is not None
    client = TestClient(create_app(tmp_path, ReviewSettings(provider="openai")))
    page = client.get(f"/programs/{pid}").text
    assert "no endpoint configured" in page and "no model given" in page
    assert "restart `rewardlab review` with" in page and "$" not in page.split('id="provider-note"')[1][:300]
    assert "No trained policy for this program yet" in page  # probes were off: said, not a failure
    elsewhere = client.post(f"/programs/{pid}/feedback", data={"text": "from another site"},
                            headers={"Origin": "http://evil.example"})
    assert elsewhere.status_code == 400 and "cannot start a refine here" in elsewhere.text
    assert client.app.state.jobs.all() == []  # type: ignore[attr-defined]
    sent = client.post(f"/programs/{pid}/feedback", data={"text": "balance nearer the centre", "tags": ["wrong stage"]})
    assert sent.status_code == 200 and "/jobs/1" in str(sent.url)
    job = client.app.state.jobs.get(1)  # type: ignore[attr-defined]
    for _ in range(600):
        if job.finished:
            break
        time.sleep(0.1)
    assert job.status == "failed" and "no model given" in job.message and "the feedback is kept in run" in job.message
    job_page = client.get("/jobs/1").text
    assert "no model given" in job_page and "restart `rewardlab review` with" in job_page
    assert "pass --model" not in job_page and "$REWARDLAB_MODEL" not in job_page and "$OPENAI_BASE_URL" not in job_page
    with RunStore(tmp_path / DB_NAME) as store:
        [kept] = feedback_history(store, pid)
    assert kept.status == "failed" and kept.feedback == "balance nearer the centre" and kept.tags == ["wrong stage"]
    assert "no model given" in (kept.reason or "")
    history = client.get(f"/programs/{pid}").text
    assert "balance nearer the centre" in history and kept.run_id in history
    empty = client.post(f"/programs/{pid}/feedback", data={"text": "  "})
    assert empty.status_code == 400 and "the feedback is empty" in empty.text


def test_refine_cli_reuses_the_parents_endpoint(tmp_path: Path, llm: ScriptedLLMServer) -> None:
    """``rewardlab refine`` without --provider asks the model that wrote the program (it used to fall back
    to the offline baseline silently) and says which."""
    cfg = GenerationConfig(provider="openai", model="scripted-model", base_url=llm.base_url, api_key="test", samples=1,
                           rounds=1, probe_steps=0, use_memory=False, max_retries=0)
    pid = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path).best_program_id
    assert pid is not None
    asked = len(llm.requests)
    done = subprocess.run([sys.executable, "-m", "rewardlab", "refine", pid[:12], "--feedback", FEEDBACK,
                           "--tag", "too slow", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="300"))
    assert done.returncode == 0, done.stderr
    assert f"refining with openai (scripted-model at {llm.base_url})" in done.stdout
    assert len(llm.requests) == asked + 1 and "[too slow] " + FEEDBACK in llm.requests[-1]["messages"][-1]["content"]


def _browser() -> Any:
    """Headless Chromium through the system's chromium-driver (apt: chromium chromium-driver)."""
    import ctypes.util

    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    missing += [] if ctypes.util.find_library("OSMesa") else ["libOSMesa (rollout videos)"]
    if missing:
        message = (f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver libosmesa6; "
                   "`make test` does)")
        if os.geteuid() == 0:  # CI runs as root and `make test` installs them: a missing browser is a failure there
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    driver.set_script_timeout(300)
    driver.set_page_load_timeout(300)
    return driver


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # a page reloading under the driver (the job page refreshes itself)
            last = e
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def test_browser_walks_the_tree_plays_the_video_and_refines(server: Server, generated: tuple[Path, str, str],
                                                            llm: ScriptedLLMServer) -> None:
    from selenium.webdriver.common.by import By

    out, run_id, parent = generated
    driver = _browser()
    try:
        driver.get(f"{server.url}/runs/{run_id}")
        assert run_id in driver.title
        node = driver.find_element(By.ID, f"node-{parent[:12]}")
        node.find_element(By.CLASS_NAME, "program-link").click()
        _wait(lambda: parent[:12] in driver.title, 30, "the program page")
        # code highlighted by pygments, the preference check, the curves
        assert driver.find_elements(By.CSS_SELECTOR, "#code .code .k")  # keywords have pygments' class
        assert "Spearman" in driver.find_element(By.ID, "preference").text
        curves = driver.find_element(By.CSS_SELECTOR, "img.curves")
        _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", curves), 60,
              "the curves to load")
        assert "success rate" in driver.find_element(By.CSS_SELECTOR, ".training table").text
        # the rollout video: rendered on first request (osmesa), then it plays
        played = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const v = document.querySelector('video.rollout');
            v.muted = true;
            v.play().then(() => setTimeout(() => done({t: v.currentTime, w: v.videoWidth, d: v.duration, err: null}), 1000))
                    .catch(e => done({err: String(e), code: v.error && v.error.code}));""")
        assert played["err"] is None, played
        assert played["w"] == 192 and played["t"] > 0 and played["d"] > 1.0, played
        assert (out / run_id / "r0-s0" / "rollout.webm").is_file()  # cached in the run directory
        # feedback with a tag -> a background refine through the scripted endpoint -> the child
        assert "openai (scripted-model" in driver.find_element(By.ID, "provider-note").text
        driver.find_element(By.CSS_SELECTOR, "input[name=tags][value='too slow']").click()
        driver.find_element(By.ID, "feedback-text").send_keys(FEEDBACK)
        driver.find_element(By.ID, "feedback-submit").click()
        _wait(lambda: "/jobs/" in driver.current_url, 30, "the job page")
        status = _wait(lambda: (s := driver.find_element(By.ID, "job-status").text) in ("done", "failed") and s, 300,
                       "the refine to finish")
        assert status == "done", driver.find_element(By.TAG_NAME, "body").text
        driver.find_element(By.ID, "child-link").click()
        _wait(lambda: driver.find_elements(By.ID, "parent-link"), 30, "the child's page")
        child = driver.current_url.rsplit("/", 1)[1]
        assert driver.find_element(By.ID, "parent-link").get_attribute("href").endswith(parent)
        diff = driver.find_element(By.ID, "diff").text
        assert "-    effort = -0.001" in diff and "+    effort = -0.02" in diff
        assert driver.find_elements(By.CSS_SELECTOR, f"#node-{child[:12]}.current")
        assert "trained" in driver.find_element(By.TAG_NAME, "body").text  # its own probe result
        assert driver.find_elements(By.CSS_SELECTOR, "img.curves")
        # the parent's tree now holds the child; the parent's page lists the feedback
        driver.get(f"{server.url}/programs/{parent}")
        assert driver.find_elements(By.CSS_SELECTOR, f"#node-{parent[:12]} #node-{child[:12]}")
        assert FEEDBACK in driver.find_element(By.ID, "feedback-history").text
        # side by side
        driver.get(f"{server.url}/compare?a={parent}&b={child}")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".side")) == 2
        assert "+    effort = -0.02" in driver.find_element(By.ID, "compare-diff").text
        assert len(driver.find_elements(By.CSS_SELECTOR, ".side video.rollout")) == 2
    finally:
        driver.quit()
    # the endpoint got the reviewer's words with the tag; the store keeps them with the refine run
    assert any("[too slow] " + FEEDBACK in str(r["messages"][-1]["content"]) for r in llm.requests)
    with RunStore(out / DB_NAME) as store:
        [given] = feedback_history(store, parent)
        run = store.get_run(given.run_id)
        assert run is not None and yaml.safe_load(run.spec_yaml)["feedback"] == FEEDBACK
        assert given.tags == ["too slow"] and given.children == [child] and given.status == "done"
        assert store.get_program(child).parent_id == parent  # type: ignore[union-attr]
        [exchange] = store.exchanges(given.run_id)
        assert FEEDBACK in json.dumps(exchange.messages)  # the prompt, and the reviewer's words beside it
        assert exchange.params["metadata"]["review"] == {"parent_id": parent, "feedback": FEEDBACK,
                                                         "tags": ["too slow"], "observed": None}


def test_an_experiment_run_shows_seeds_with_intervals_curves_and_videos(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app
    from rewardlab.runs.runner import run_experiment

    spec = {"name": "review-tiny", "description": "two seeds of the reference reward, one PPO rollout each",
            "tasks": ["mujoco/InvertedPendulum-v5"], "rewards": ["reference"], "algorithms": ["ppo"], "seeds": [0, 1],
            "budget": {"steps": 1024}, "evaluation": {"episodes": 2}, "workers": 1}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    summary = run_experiment(tmp_path / "spec.yaml", out=out, workers=1)
    client = TestClient(create_app(out))
    with RunStore(out / DB_NAME) as store:
        trials = store.trials(summary.run_id)
    assert len(trials) == 2 and all(t.status == "done" and t.program_id for t in trials)
    index = client.get("/").text  # `rewardlab run SPEC` runs are listed, as experiments
    assert f'href="/runs/{summary.run_id}"' in index and "experiment review-tiny" in index
    page = client.get(f"/runs/{summary.run_id}").text
    assert "Experiment run" in page and spec["description"] in page
    assert "(IQM, n=2)" in page and "reference" in page  # over seeds, with an interval
    videos = re.findall(r'src="(/runs/[^"]+\.webm)"', page)
    curves = re.findall(r'src="(/runs/[^"]+\.svg)"', page)
    assert len(videos) == 2 and len(curves) == 2
    svg = client.get(curves[0])
    assert svg.status_code == 200 and svg.text.lstrip().startswith("<?xml") and "reward components" in svg.text
    video = client.get(videos[0])
    assert video.status_code == 200 and video.headers["content-type"] == "video/webm" and video.content[:4] == b"\x1aE\xdf\xa3"
    program = client.get(f"/programs/{trials[0].program_id}").text
    assert program.count('class="training"') == 2 and "trial mujoco/InvertedPendulum-v5" in program


@pytest.fixture(scope="module")
def trained(generated: tuple[Path, str, str]) -> Path:
    """A ``rewardlab train`` run (one PPO rollout on InvertedPendulum) in the reviewed runs root's
    ``train/`` folder, where the command puts it by default: its directory, which is not in the store."""
    out = generated[0]
    done = subprocess.run([sys.executable, "-m", "rewardlab", "train", "--env", "mujoco/InvertedPendulum-v5",
                           "--reward", "reference", "--steps", "1024", "--eval-episodes", "2", "--out",
                           str(out / "train")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [run_dir] = [p for p in (out / "train").iterdir() if (p / "result.json").is_file()]
    assert (run_dir / "model.zip").is_file() and (run_dir / "train.yaml").is_file()
    return run_dir


def test_train_runs_are_listed_and_have_a_page(server: Server, trained: Path) -> None:
    """``rewardlab train`` writes only its directory (no store row): the index lists it, its page shows
    the final evaluation, curves and a video link, and ``rewardlab review NAME`` opens it."""
    status, index = server.get("/")
    assert status == 200 and f'href="/train/{trained.name}"' in index and "mujoco/InvertedPendulum-v5" in index
    status, body = server.get(f"/train/{trained.name}")
    assert status == 200 and "Training run" in body and "final success rate" in body
    assert f'src="/train/{trained.name}/curves.svg"' in body and f'src="/train/{trained.name}/video.webm"' in body
    assert "result.json" in body and "reference" in body
    status, svg = server.get(f"/train/{trained.name}/curves.svg")
    assert status == 200 and svg.lstrip().startswith("<?xml")
    status, text = server.get(f"/train/{trained.name}/files/result.json")
    assert status == 200 and json.loads(text)["algo"] == "ppo"
    for path in (f"/train/{trained.name}/files/../../rewardlab.sqlite", f"/train/{trained.name}/files/..%2f..%2fx",
                 "/train/..%2f..%2fetc/files/passwd", "/train/nope"):
        assert server.get(path)[0] in (400, 404), path
    out = trained.parent.parent
    for name in (trained.name, f"train/{trained.name}", str(trained)):  # each way a user may name it
        srv = Server(name, "--out", str(out), "--port", "0")
        try:
            assert f"/train/{trained.name} " in srv.printed and srv.get(f"/train/{trained.name}")[0] == 200
        finally:
            srv.stop()


def test_a_train_run_made_before_train_yaml_is_read_from_its_name(trained: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app

    old = tmp_path / "train" / f"{trained.name}-2"
    shutil.copytree(trained, old)
    (old / "train.yaml").unlink()
    (old / "rollout.webm").unlink(missing_ok=True)
    client = TestClient(create_app(tmp_path))  # no store at all: the train runs alone are reviewable
    assert f"/train/{old.name}" in client.get("/").text
    page = client.get(f"/train/{old.name}").text
    assert "mujoco/InvertedPendulum-v5" in page and "seed 0" in page and "read from the directory name" in page
    assert not (tmp_path / DB_NAME).exists()  # reading never creates a store


def test_every_run_kind_gets_its_own_title(generated: tuple[Path, str, str]) -> None:
    """A randomise proposal is no experiment: its page has its title, ranges and files."""
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app

    out, run_id, _ = generated
    with RunStore(out / DB_NAME) as store:
        store.create_run("randomize-test", "randomize", yaml.safe_dump(
            {"kind": "domain randomisation proposal", "card": "mujoco/InvertedPendulum-v5", "provider": "offline"}))
        store.set_run_status("randomize-test", "done")
    (out / "randomize-test").mkdir()
    (out / "randomize-test" / "ranges.yaml").write_text("pole_mass: [0.5, 1.5]  # heavier and lighter poles\n")
    client = TestClient(create_app(out))
    page = client.get("/runs/randomize-test").text
    assert "Domain randomisation proposal randomize-test" in page and "Experiment run" not in page
    assert "pole_mass: [0.5, 1.5]" in page and "ranges.yaml" in page
    assert "Generation run " + run_id in client.get(f"/runs/{run_id}").text
    assert 'class="kind-randomize"' in client.get("/").text


def test_bad_requests_get_the_sites_error_page(server: Server, generated: tuple[Path, str, str]) -> None:
    _, _, pid = generated
    for path, says in [(f"/compare?a={pid}", "missing query parameter 'b'"), ("/compare", "missing query parameter"),
                       ("/jobs/notanumber", "path part 'job_id'")]:
        status, body = server.get(path)
        assert status == 400, path
        assert 'id="error-message"' in body and says in body.replace("&#39;", "'"), (path, body[-400:])
        assert not body.lstrip().startswith("{")


def test_offline_refines_say_the_baseline_cannot_read_feedback(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app

    cfg = GenerationConfig(provider="offline", samples=1, rounds=1, probe_steps=0, use_memory=False)
    pid = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path).best_program_id
    assert pid is not None
    client = TestClient(create_app(tmp_path))
    page = client.get(f"/programs/{pid}").text
    assert "the offline baseline cannot read feedback" in page and "--base-url" in page
    sent = client.post(f"/programs/{pid}/feedback", data={"text": "balance nearer the centre"})
    assert sent.status_code == 200 and "the offline baseline cannot read feedback" in sent.text


def test_unrenderable_simulators_show_why_instead_of_a_player(trained: Path, tmp_path: Path) -> None:
    """A ManiSkill policy on a machine with no render device: the page says so in one line naming
    ManiSkill (not MuJoCo's setting), and the video URL answers at once. The run is a copy of the real
    InvertedPendulum train run relabelled as ManiSkill's PushCube: only the page's decision is tested."""
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app
    from rewardlab.review.video import has_gpu_device, render_problem

    if has_gpu_device():
        pytest.skip("this machine has a GPU device: ManiSkill may render here")
    problem = render_problem("maniskill")
    assert problem and "ManiSkill" in problem and "MUJOCO_GL" not in problem
    relabelled = tmp_path / "train" / "maniskill_PushCube-v1-reference-ppo-0"
    shutil.copytree(trained, relabelled)
    (relabelled / "rollout.webm").unlink(missing_ok=True)
    settings = yaml.safe_load((relabelled / "train.yaml").read_text())
    (relabelled / "train.yaml").write_text(yaml.safe_dump({**settings, "card_id": "maniskill/PushCube-v1"}))
    client = TestClient(create_app(tmp_path))
    page = client.get(f"/train/{relabelled.name}").text
    assert "<video" not in page and "No video: ManiSkill renders through SAPIEN" in page
    video = client.get(f"/train/{relabelled.name}/video.webm")
    assert video.status_code == 400 and "ManiSkill" in video.text and "MUJOCO_GL" not in video.text


def test_a_failed_render_is_remembered_not_retried(trained: Path, tmp_path: Path) -> None:
    """A render that fails leaves its reason in the trial directory: the next request answers it without
    starting the renderer (a good model put back afterwards is not rendered until the marker goes)."""
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app
    from rewardlab.review.video import FAILED_NAME

    broken = tmp_path / "train" / trained.name
    shutil.copytree(trained, broken)
    (broken / "rollout.webm").unlink(missing_ok=True)
    (broken / "model.zip").write_bytes(b"not a zip")
    client = TestClient(create_app(tmp_path))
    first = client.get(f"/train/{broken.name}/video.webm")
    assert first.status_code == 400 and "MUJOCO_GL=" in first.text
    reason = (broken / FAILED_NAME).read_text().strip()
    assert reason.startswith(f"rendering {broken.name} failed with MUJOCO_GL=")
    shutil.copy(trained / "model.zip", broken / "model.zip")
    again = client.get(f"/train/{broken.name}/video.webm")
    assert again.status_code == 400 and f"delete {FAILED_NAME}" in again.text
    assert not (broken / "rollout.webm").exists()
    page = client.get(f"/train/{broken.name}").text
    assert "No video: rendering" in page and "<video" not in page


def test_a_train_run_of_a_stored_program_shows_on_its_page(trained: Path, tmp_path: Path) -> None:
    """``rewardlab train --reward FILE`` of a program the store knows: the program page lists the run's
    training, and the run's page links the program."""
    from fastapi.testclient import TestClient

    from rewardlab.review.app import create_app

    shutil.copytree(trained, tmp_path / "train" / trained.name)
    with RunStore(tmp_path / DB_NAME) as store:
        pid = store.add_program((trained / "reward.py").read_text(), "reference", "mujoco/InvertedPendulum-v5")
    client = TestClient(create_app(tmp_path))
    assert f'id="program-link" href="/programs/{pid}"' in client.get(f"/train/{trained.name}").text
    program = client.get(f"/programs/{pid}").text
    assert f"rewardlab train run {trained.name}" in program and f'src="/train/{trained.name}/curves.svg"' in program
