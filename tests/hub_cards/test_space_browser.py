"""Issue 16: the Space app in a real browser (Debian's Chromium driven by Selenium) and its input checks.

The app runs in a subprocess on localhost with the tiny model and the demo clips; the test uploads a clip, submits,
waits, and reads the page: a label from the label set, probabilities that sum to 1, the trajectory plot. Each bad
input (not a video, no audio track, too long, a URL) must show a message in the page. A machine without Chromium,
its driver, gradio or selenium skips these tests with the reason (`python3 quickstart.py test` installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.media_fixtures import write_constant_video

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(ROOT, "hub_cards", "space", "app.py")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
LABELS = ["worried", "happy", "neutral", "angry", "surprise", "sad"]
MAX_SECONDS = 6.0

pytestmark = pytest.mark.slow


def _requirements() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "Chromium / ChromeDriver not installed (apt-get install chromium chromium-driver; quickstart does it)"
    for module in ("selenium", "gradio"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e .[space])"
    return None


@pytest.fixture(scope="module")
def app_url(demo_manifest, tmp_path_factory):
    """The app on a free localhost port, with the demo clips; stopped after the module."""
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clips = os.path.join(os.path.dirname(demo_manifest), "clips")
    log = tmp_path_factory.mktemp("space") / "app.log"
    command = [sys.executable, APP, "--model", "tiny", "--clips", clips, "--port", str(port),
               "--max-seconds", str(MAX_SECONDS)]  # fmt: skip
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(app_url, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _submit(driver, url: str, upload: str | None = None, picked: str | None = None, subtitle: str | None = None):
    """Load the page fresh, give it a clip (upload or typed into the demo-clip box), submit, wait for an answer or a
    message; returns the message text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#analyse"))
    if upload is not None:
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(upload)
        stem = os.path.splitext(os.path.basename(upload))[0]  # the page breaks the name before its extension
        wait.until(lambda d: stem in d.find_element(By.CSS_SELECTOR, "#upload").text)
    if picked is not None:
        box = driver.find_element(By.CSS_SELECTOR, "#demo-clip input")
        box.send_keys(picked)
        box.send_keys(Keys.ENTER)
    if subtitle is not None:
        driver.find_element(By.CSS_SELECTOR, "#subtitle textarea").send_keys(subtitle)
    driver.find_element(By.CSS_SELECTOR, "#analyse").click()

    def answered(d):
        message = d.find_element(By.CSS_SELECTOR, "#message").text.strip()
        labels = d.find_elements(By.CSS_SELECTOR, "#predicted-label")
        busy = d.find_elements(By.CSS_SELECTOR, ".progress-text, .eta-bar")
        return (message or (labels and labels[0].text.strip())) and not busy

    wait.until(answered)
    return driver.find_element(By.CSS_SELECTOR, "#message").text.strip()


def _probabilities(driver) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#probabilities tr")[1:]
    return {r.find_element(By.CSS_SELECTOR, ".label").text: float(r.find_element(By.CSS_SELECTOR, ".prob").text)
            for r in rows}  # fmt: skip


def test_a_demo_clip_gives_a_label_probabilities_and_the_trajectory(browser, app_url, demo_manifest, tmp_path):
    from selenium.webdriver.common.by import By

    clip = os.path.join(os.path.dirname(demo_manifest), "clips", "demo_0000.mp4")
    message = _submit(browser, app_url, upload=clip, subtitle="Let me tell you what happened next.")
    assert message == ""
    label = browser.find_element(By.CSS_SELECTOR, "#predicted-label").text
    probabilities = _probabilities(browser)
    assert label in LABELS and set(probabilities) == set(LABELS)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=6 * 5e-5)  # six values rounded to 4 decimals
    assert probabilities[label] == max(probabilities.values())
    plot = browser.find_elements(By.CSS_SELECTOR, "#trajectory-plot img")
    assert plot and plot[0].get_attribute("src") and plot[0].get_attribute("naturalWidth") not in (None, "0")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#frames img")) >= 1
    shot = tmp_path / "space.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("AFFECTVERSE_SCREENSHOT"):  # how the README's screenshot is made
        shutil.copy(shot, os.environ["AFFECTVERSE_SCREENSHOT"])


def test_not_a_video_shows_a_message(browser, app_url, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all\n")
    message = _submit(browser, app_url, upload=str(text))
    assert "notes.txt" in message and "not a video" in message


def test_a_clip_without_audio_is_answered_with_a_note(browser, app_url, tmp_path):
    from selenium.webdriver.common.by import By

    silent = tmp_path / "silent.mp4"
    write_constant_video(str(silent), 2.0)
    message = _submit(browser, app_url, upload=str(silent))
    assert "no audio track" in message
    assert browser.find_element(By.CSS_SELECTOR, "#predicted-label").text in LABELS


def test_a_too_long_clip_shows_a_message(browser, app_url, tmp_path):
    long = tmp_path / "long.mp4"
    write_constant_video(str(long), MAX_SECONDS + 2, fps=10, audio_seconds=MAX_SECONDS + 2)
    message = _submit(browser, app_url, upload=str(long))
    assert "long.mp4 lasts" in message and f"up to {MAX_SECONDS:g} s" in message


def test_a_url_shows_a_message(browser, app_url):
    message = _submit(browser, app_url, picked="https://example.com/clip.mp4")
    assert "Links are not fetched" in message
