"""End to end in a real headless browser: Debian's chromium + chromedriver, driven by Selenium.

Loads the page served by `merkit serve` (the shipped model), uploads a generated audio file and
reads the result off the page, then uploads a file that is not audio and reads the message.
Skips, with the reason, when chromium, chromedriver or selenium is missing (``.ci/run``
installs them through ``install.sh``).
"""
from __future__ import annotations

import re
import shutil

import pytest
import soundfile as sf

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytest.importorskip("uvicorn")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from test_predict import music  # noqa: E402
from test_serve import running_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="chromedriver is not installed (apt-get install chromium-driver)"),
]
# Offline and reproducible: no sandbox (containers), no GPU, no network side channels, a fresh profile.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,1000")
TIMEOUT_S = 120  # first prediction includes decoding and the model on a busy 2-core machine


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # an explicit driver path: Selenium Manager never looks for (or downloads) a driver
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site():
    from merkit.predict import load_model
    from merkit.web.app import create_app

    with running_server(create_app(load_model())) as url:
        yield url


def test_upload_audio_and_bad_file(browser, site, tmp_path):
    song = tmp_path / "generated song.wav"
    sf.write(song, music(25.0), 44_100)
    browser.get(site + "/")
    assert "merkit" in browser.title
    wait = WebDriverWait(browser, TIMEOUT_S)

    browser.find_element(By.ID, "file-input").send_keys(str(song))
    wait.until(EC.visibility_of_element_located((By.ID, "result")))
    quadrant = browser.find_element(By.ID, "quadrant").text
    assert re.fullmatch(r"Q[1-4]", quadrant)
    word = browser.find_element(By.ID, "quadrant-word").text
    assert word in ("happy/excited", "angry/tense", "sad/depressed", "calm/relaxed")
    conf = float(browser.find_element(By.ID, "certainty").text)
    assert 0.25 <= conf <= 1.0  # the shipped (unified) model: the quadrant's probability
    # its mood words are shown, and the certainty says what it is
    assert browser.find_element(By.ID, "mood-card").is_displayed()
    assert browser.find_element(By.ID, "mood-words").text
    assert browser.find_element(By.ID, "certainty-note").text == "probability of the quadrant"
    for key in ("arousal", "valence"):
        assert 0.0 <= float(browser.find_element(By.ID, key).text) <= 1.0
    # the point on the V-A circle sits where P(V) and P(A) put it (SVG y grows downwards)
    dot = browser.find_element(By.ID, "va-point")
    v, a = float(browser.find_element(By.ID, "valence").text), float(browser.find_element(By.ID, "arousal").text)
    assert float(dot.get_attribute("cx")) == pytest.approx(2 * v - 1, abs=0.011)
    assert float(dot.get_attribute("cy")) == pytest.approx(-(2 * a - 1), abs=0.011)
    # 25 s -> the shipped model's 2 Hz curve: both series drawn with 50 points, each with its band
    # (the line inside it)
    for key in ("valence", "arousal"):
        pts = browser.find_element(By.CSS_SELECTOR, f"#timeline .series-{key}").get_attribute("points")
        assert len(pts.split()) == 50
        band = browser.find_element(By.CSS_SELECTOR, f"#timeline .band-{key}").get_attribute("points").split()
        assert len(band) == 100
        line_y = [float(p.split(",")[1]) for p in pts.split()]
        upper = [float(p.split(",")[1]) for p in band[:50]]
        lower = [float(p.split(",")[1]) for p in band[50:]][::-1]
        assert all(u <= y + 1e-6 and y <= lo + 1e-6 for u, y, lo in zip(upper, line_y, lower))  # SVG y grows down
    assert browser.find_element(By.ID, "error").is_displayed() is False

    bad = tmp_path / "shopping list.mp3"
    bad.write_text("eggs, milk, bread\n" * 50)
    browser.find_element(By.ID, "file-input").send_keys(str(bad))
    err = wait.until(EC.visibility_of_element_located((By.ID, "error")))
    assert "shopping list.mp3" in err.text and "cannot decode" in err.text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_not_music_and_every_model_kind_display(browser, tmp_path):
    """Silence gets the not-music message, never a quadrant; a single-task DAMER model (only a
    valence network, as `merkit train --label v` makes) shows its one dimension and no quadrant,
    with no script error."""
    import numpy as np

    from merkit.predictors.damer import EmotionModel
    from merkit.web.app import create_app
    from test_predict import tiny_network

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(30 * 44_100, dtype=np.float32), 44_100)
    song = tmp_path / "song.wav"
    sf.write(song, music(20.0), 44_100)
    with running_server(create_app(EmotionModel({"v": tiny_network(2)}))) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, TIMEOUT_S)
        browser.find_element(By.ID, "file-input").send_keys(str(silent))
        err = wait.until(EC.visibility_of_element_located((By.ID, "error")))
        assert "not music" in err.text and "silence" in err.text
        assert not browser.find_element(By.ID, "result").is_displayed()

        browser.find_element(By.ID, "file-input").send_keys(str(song))
        wait.until(EC.visibility_of_element_located((By.ID, "result")))
        assert browser.find_element(By.ID, "quadrant").text == "\u2013"
        assert browser.find_element(By.ID, "arousal").text == "\u2013"
        v = float(browser.find_element(By.ID, "valence").text)
        assert 0.0 <= v <= 1.0
        assert 0.5 <= float(browser.find_element(By.ID, "certainty").text) <= 1.0
        assert "view agreement" in browser.find_element(By.ID, "certainty-note").text
        dot = browser.find_element(By.ID, "va-point")
        assert float(dot.get_attribute("cx")) == pytest.approx(2 * v - 1, abs=0.011)
        assert float(dot.get_attribute("cy")) == pytest.approx(0.0, abs=1e-9)  # no arousal: the axis
        # only the valence series is drawn; the page raised no error
        assert browser.find_elements(By.CSS_SELECTOR, "#timeline .series-valence")
        assert not browser.find_elements(By.CSS_SELECTOR, "#timeline .series-arousal")
        logs = [e for e in browser.get_log("browser") if e.get("source") == "javascript"]
        assert not logs, logs


def test_a_dynamic_model_draws_its_2hz_scores(browser, tmp_path):
    """A DSAML model file (no probabilities): the page shows scores, says so, and draws the
    2 Hz curve."""
    import torch

    from merkit.commands.train_dynamic import dsaml_checkpoint
    from merkit.models.dsaml import DSAML, DSAMLConfig
    from merkit.predict import load_model
    from merkit.checkpoint import save_checkpoint
    from merkit.web.app import create_app

    torch.manual_seed(0)
    net = DSAML(DSAMLConfig(d_model=16, heads=2, lstm_hidden=8)).eval()
    path = save_checkpoint(tmp_path / "dyn.pt", dsaml_checkpoint(net, train={}, info={"grid": {"hop": 0.5}},
                                                                 val={}, test={}, best_epoch=0))
    song = tmp_path / "song.wav"
    sf.write(song, music(12.0), 44_100)
    with running_server(create_app(load_model(path))) as url:
        browser.get(url + "/")
        browser.find_element(By.ID, "file-input").send_keys(str(song))
        WebDriverWait(browser, TIMEOUT_S).until(EC.visibility_of_element_located((By.ID, "result")))
        assert re.fullmatch(r"Q[1-4]", browser.find_element(By.ID, "quadrant").text)
        assert -1.0 <= float(browser.find_element(By.ID, "valence").text) <= 1.0
        assert "score" in browser.find_element(By.ID, "valence-note").text
        pts = browser.find_element(By.CSS_SELECTOR, "#timeline .series-arousal").get_attribute("points")
        assert len(pts.split()) == 24  # 12 s at 2 Hz
        assert not [e for e in browser.get_log("browser") if e.get("source") == "javascript"]
