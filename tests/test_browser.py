"""A learner's first ten minutes, in a real browser: JupyterLab from `make lab`, lab 00 run through the UI.

JupyterLab is started by `make lab` itself (on a free port, with the lab host of this test run's
network namespace), and Debian's headless Chromium, driven by Selenium through Debian's
chromium-driver, opens lab 00, clears its stored outputs, runs every cell from the Run menu, and
reads the page: every ✔ line that the stored notebook shows must be on the page, no cell may
fail, the widgets must render (a progress bar, the status view), and JupyterLab must not have
asked about its news.  The screenshot is kept in tests/artifacts/ (git-ignored).

Nothing is downloaded at run time: the browser and its driver are Debian's, Selenium is told
where they are and to stay offline, and Chromium's background networking is off (it would
otherwise try to reach Google's hosts).  JupyterLab's settings and workspaces go to the test's
own folder, where autosave is off, so the stored notebook is never rewritten.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from cloudlab import config

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "labs" / "00_start_here.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 300
NEWS_QUESTION = "official Jupyter news"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_pass_lines(path):
    """The ✔ lines of the stored notebook's compared outputs (the doctor's table depends on the machine)."""
    nb = nbformat.read(str(path), as_version=4)
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "nbval-ignore-output" in cell.metadata.get("tags", []):
            continue
        for output in cell.outputs:
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            lines += [line.strip() for line in text.splitlines() if line.strip().startswith("\u2714")]
    return lines


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab started by `make lab`; yields its URL with the token."""
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            pytest.fail(f"{program} is missing: `make test` installs Debian's chromium and chromium-driver")
    settings = tmp_path / "lab-settings"
    for plugin, values in {
        # autosave off: the run must not rewrite the stored notebook
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        # every cell in the page, not only those scrolled into view, so the test can read them all
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / plugin).write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    env.pop("CLOUDLAB_WIDGETS", None)       # a browser shows real widgets
    proc = subprocess.Popen(["make", "-s", "lab", f"JUPYTER_PORT={port}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log, found = [], threading.Event()
    url_re = re.compile(rf"http://127\.0\.0\.1:{port}/\S*\?token=[0-9a-f]+")

    def read():
        for line in proc.stdout:
            log.append(line)
            if url_re.search(line):
                found.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not found.wait(0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("make lab did not start JupyterLab:\n" + "".join(log[-40:]))
        url = url_re.search("".join(log)).group(0)
        yield url, log
    finally:
        # make, jupyter and its kernels are one process group of this test's own
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ["SE_OFFLINE"] = "true"        # Selenium Manager must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def click_menu(driver, menu, item):
    """Open a menu of JupyterLab's menu bar and click one of its items, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(driver, 30)
    # labels may carry a mnemonic (<u>R</u>un), so match the item's whole text; the item's text
    # is its label followed by its shortcut, if it has one
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][normalize-space(.)='{menu}']"))).click()
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, f"//li[contains(@class,'lm-Menu-item')][starts-with(normalize-space(.), '{item}')]"))).click()


def test_lab_00_runs_top_to_bottom_in_jupyterlab(jupyterlab, browser):
    try:
        run_lab_00(jupyterlab, browser)
    finally:
        # the screenshot is kept whatever happened: it is what a person would have seen
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "browser-00_start_here.png"))


def run_lab_00(jupyterlab, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, log = jupyterlab
    stored = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    expected = expected_pass_lines(NOTEBOOK)
    assert len(expected) >= 6, expected

    assert "/lab/tree/labs/00_start_here.ipynb?" in url       # make lab opens lab 00 first
    browser.get(url)
    # JupyterLab re-renders outputs while cells run: an element found a moment ago may be gone
    # when its text is read, and the wait then simply looks again
    wait = WebDriverWait(browser, 120, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException])
    page = "#jp-main-dock-panel .jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"

    def notebook_text(d):
        """What the cells' outputs show (the markdown text mentions ✔ too)."""
        return "\n".join(e.text for e in d.find_elements(By.CSS_SELECTOR, f"{page} .jp-OutputArea"))
    # the stored outputs show first, as stored, once the notebook has loaded and its kernel is idle
    wait.until(lambda d: "\u2714" in notebook_text(d))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")
               or "Idle" in d.find_element(By.ID, "jp-main-statusbar").text)
    cells = browser.find_elements(By.CSS_SELECTOR, f"{page} .jp-CodeCell")
    assert len(cells) == sum(c.cell_type == "code" for c in nbformat.read(str(NOTEBOOK), as_version=4).cells)

    click_menu(browser, "Edit", "Clear Outputs of All Cells")
    wait.until(lambda d: "\u2714" not in notebook_text(d))
    click_menu(browser, "Run", "Run All Cells")

    # done when every code cell has its execution count and nothing is running
    codes = len(cells)
    long_wait = WebDriverWait(browser, RUN_TIMEOUT_S, poll_frequency=1, ignored_exceptions=[StaleElementReferenceException])
    long_wait.until(lambda d: len([p for p in d.find_elements(By.CSS_SELECTOR, f"{page} .jp-CodeCell .jp-InputPrompt")
                                   if re.fullmatch(r"\[\d+\]:", p.text.strip())]) == codes)
    text = notebook_text(browser)
    # the screenshot shows the self-checks
    checks = [o for o in browser.find_elements(By.CSS_SELECTOR, f"{page} .jp-OutputArea") if "checks passed" in o.text]
    if checks:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", checks[0])
    missing = [line for line in expected if line not in text]
    assert not missing, f"not on the page: {missing}\n(screenshot in {ARTIFACTS})"
    assert "Traceback" not in text and not browser.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.error']")
    # the widgets render: the image build's progress bar and the lab's status view
    assert browser.find_elements(By.CSS_SELECTOR, f"{page} .widget-hprogress")      # ipywidgets' IntProgress
    assert "lab start: services host, image" in text and "no servers" in text      # the status view's table
    assert NEWS_QUESTION not in browser.find_element(By.TAG_NAME, "body").text
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == stored, "the stored notebook was rewritten"
