"""JupyterLab in a real browser: what a workshop participant does in the first minutes.

Starts JupyterLab on loopback (no browser of its own, a token, --allow-root), opens the tour and
one paper notebook (both parameterised with the tiny preset, widgets on) in headless Chromium
driven by Playwright, runs all cells, checks that the widgets render, drags a slider and checks
that the output depending on it changes. Screenshots go to ``test-artifacts/browser/``.

Needs Debian's ``chromium`` (``/usr/bin/chromium``; ``.ci/run`` installs it) and the Python
``playwright`` package (in the test extra); never ``playwright install``, which downloads a browser.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
INSTALL_HINT = ("the browser test needs Debian's chromium: `sudo apt-get install chromium` "
                "(and `pip install playwright`, in the test extra); never `playwright install`")
# Flags for a closed network and root (no sandbox); without the background-networking ones Chromium
# keeps trying to reach Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# (notebook, text that starts the line the slider changes)
NOTEBOOKS = [("00_tour", "FGSM ε ="), ("21_kde_gradient_analysis", "A2 =")]
# The comparison notebook with the defenses that train in seconds, so a second dataset is compared on demand
# within the test (digits: offline everywhere).
COMPARISON = "90_defense_comparison"
COMPARISON_OVERRIDES = {"DEFENSES": ["undefended", "feature_squeezing", "attractors"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}")
    pytest.importorskip("playwright", reason=INSTALL_HINT)
    import papermill

    work = tmp_path_factory.mktemp("lab")
    overrides = {**{name: {} for name, _ in NOTEBOOKS}, COMPARISON: COMPARISON_OVERRIDES}
    for name, extra in overrides.items():  # the notebook as a participant opens it, with the tiny preset's settings
        params = yaml.safe_load((ROOT / "params" / "tiny" / f"{name}.yaml").read_text())
        papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(work / f"{name}.ipynb"),
                                   parameters={**params, **extra, "INTERACTIVE": True}, prepare_only=True,
                                   progress_bar=False)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(work / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.open_browser=False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DECOYLAB_BATCH": "0"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(work / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield base, token, work
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _output_line(page, prefix: str) -> str:
    """The text of the first output line starting with ``prefix`` ('' while there is none)."""
    return page.evaluate("""prefix => {
        for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
            for (const line of (el.innerText || '').split('\\n')) {
                if (line.trim().startsWith(prefix)) return line.trim();
            }
        }
        return '';
    }""", prefix)


def _open_and_run_all(browser, base: str, token: str, name: str):
    """Open ``name`` in a workspace of its own, wait for its kernel, Run All; returns (page, first slider,
    page errors) once no cell is running."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # A workspace of its own: JupyterLab would otherwise restore the other notebook's tab beside this one.
    page.goto(f"{base}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    # Wait for the kernel, then run every cell as a participant would (Run > Run All Cells).
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel", timeout=90_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        slider = page.wait_for_selector(".jupyter-widgets .noUi-handle", state="visible", timeout=240_000)
        page.wait_for_function(
            "() => ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.innerText.includes('*'))",
            timeout=240_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{name}-ran.png"), full_page=False)
    errors_in_cells = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert not [e for e in errors_in_cells if "Traceback" in e or "Error" in e.split("\n")[0]], errors_in_cells
    assert page.locator(".jupyter-widgets").count() > 0, "no widget rendered"
    return page, slider, errors


def _wait_for_line(page, prefix: str, timeout_ms: int = 120_000) -> str:
    page.wait_for_function("prefix => [...document.querySelectorAll('.jp-OutputArea-output')]"
                           ".some(el => (el.innerText || '').split('\\n').some(l => l.trim().startsWith(prefix)))",
                           arg=prefix, timeout=timeout_ms)
    return _output_line(page, prefix)


def _drag_and_wait_for_change(page, slider, prefix: str, before: str) -> str:
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("([prefix, before]) => [...document.querySelectorAll('.jp-OutputArea-output')]"
                           ".some(el => (el.innerText || '').split('\\n').some(l => l.trim().startsWith(prefix)"
                           " && l.trim() !== before))", arg=[prefix, before], timeout=180_000)
    return _output_line(page, prefix)


@pytest.mark.parametrize("name, prefix", NOTEBOOKS)
def test_run_all_widgets_render_and_a_slider_changes_the_output(lab, browser, name, prefix):
    base, token, _ = lab
    page, slider, errors = _open_and_run_all(browser, base, token, name)
    # Run All leaves the view at the last cell; JupyterLab lays out (and gives innerText to) only the cells
    # near the view, so the participant's next step, scrolling to the slider, comes first.
    slider.scroll_into_view_if_needed()
    before = _wait_for_line(page, prefix)
    assert before, f"no output line starting with {prefix!r}"
    after = _drag_and_wait_for_change(page, slider, prefix, before)
    page.screenshot(path=str(ARTIFACTS / f"{name}-slider-moved.png"), full_page=False)
    assert after != before
    assert not errors, errors
    page.close()


def test_comparison_compares_a_second_dataset_from_the_dataset_widget(lab, browser):
    """Notebook 90: Run All on mnist5k, pick digits in the dataset dropdown, press the button: every
    contender is trained on digits in the kernel and the panel's table switches to it; the FPR slider
    then changes the digits table."""
    base, token, _ = lab
    page, slider, errors = _open_and_run_all(browser, base, token, COMPARISON)
    slider.scroll_into_view_if_needed()  # JupyterLab renders only the cells near the view
    assert _wait_for_line(page, "mnist5k, pgd,")
    page.locator(".widget-dropdown select").first.select_option("digits")
    assert _wait_for_line(page, "digits has not been compared")
    page.get_by_role("button", name="compare on this dataset").click()
    before = _wait_for_line(page, "digits, pgd,", timeout_ms=240_000)
    page.screenshot(path=str(ARTIFACTS / f"{COMPARISON}-digits.png"), full_page=False)
    after = _drag_and_wait_for_change(page, slider, "digits, pgd,", before)
    assert after != before and "threshold at FPR" in after
    assert not errors, errors
    page.close()
