"""The library page of `merkit serve --library`: its JSON API (tracks, audio by number only,
playlist export, token) and, in headless Chromium, the page itself: points coloured by quadrant,
hover, click to play, region filter, playlist export (a screenshot is left in the test's folder)."""
from __future__ import annotations

import csv
import json
import shutil
import urllib.error
import urllib.request

import pytest
import soundfile as sf

from conftest import melody

pytest.importorskip("uvicorn")
from test_serve import running_server  # noqa: E402

SR = 22_050
SCORES = [(0.8, 0.7), (-0.6, 0.5), (-0.5, -0.6), (0.4, -0.8), (0.9, -0.2)]  # (v, a) scores


def _library(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    rows = []
    for i, (v, a) in enumerate(SCORES):
        sf.write(music / f"track{i}.wav", melody(2.0, SR, seed=i), SR)
        q = 1 if v >= 0 and a >= 0 else 2 if a >= 0 else 3 if v < 0 else 4
        rows.append({"kind": "track", "path": f"music/track{i}.wav", "status": "ok", "valence_score": v,
                     "arousal_score": a, "valence": (v + 1) / 2, "arousal": (a + 1) / 2, "quadrant": q,
                     "mood_words": f"mood{i}"})
    lib = tmp_path / "library.csv"
    with open(lib, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return lib


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from merkit.web.app import create_app

    d = tmp_path_factory.mktemp("lib")
    lib = _library(d)
    with running_server(create_app(model="(no model needed)", library=str(lib))) as url:
        yield url, d


def test_api_lists_tracks_serves_only_their_audio_and_exports(site):
    url, d = site
    status, body, _ = _get(url + "/api/library")
    tracks = json.loads(body)["tracks"]
    assert status == 200 and [t["title"] for t in tracks] == [f"track{i}" for i in range(5)]
    assert [t["quadrant"] for t in tracks] == [1, 2, 3, 4, 4] and tracks[0]["path"] == "music/track0.wav"
    status, body, headers = _get(url + "/api/library/audio/2")
    assert status == 200 and body == (d / "music" / "track2.wav").read_bytes()
    for bad in ("5", "-1", "..%2F..%2Fetc%2Fpasswd", "x"):
        status, body, _ = _get(url + f"/api/library/audio/{bad}")
        assert status == 404 and json.loads(body)["ok"] is False, bad
    status, body, headers = _get(url + "/api/library/playlist?ids=0,3")
    lines = body.decode().splitlines()
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert [ln for ln in lines if not ln.startswith("#")] == [str((d / "music" / f"track{i}.wav").resolve())
                                                              for i in (0, 3)]  # absolute: saved anywhere


def test_a_token_guards_the_library(tmp_path):
    from merkit.web.app import create_app

    lib = _library(tmp_path)
    with running_server(create_app(model="m", library=str(lib), token="s3cret")) as url:
        assert _get(url + "/api/library")[0] == 401
        assert _get(url + "/api/library/audio/0")[0] == 401
        assert _get(url + "/api/library", {"Authorization": "Bearer s3cret"})[0] == 200
        assert _get(url + "/api/library/audio/0?token=s3cret")[0] == 200


webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="chromium / chromedriver not installed")
def test_the_page_in_a_browser(site, tmp_path_factory):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_web_browser import CHROMIUM_FLAGS

    url, d = site
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument("--autoplay-policy=no-user-gesture-required")
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get(url + "/library")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "circle.track")) == 5)
        circles = driver.find_elements(By.CSS_SELECTOR, "circle.track")
        fills = [c.get_attribute("fill") for c in circles]
        assert fills[3] == fills[4] != fills[0] and len(set(fills)) == 4  # coloured by quadrant
        ActionChains(driver).move_to_element(circles[1]).perform()
        wait.until(lambda dr: "track1" in dr.find_element(By.ID, "hover-info").text)
        assert "mood1" in driver.find_element(By.ID, "hover-info").text
        circles[2].click()
        wait.until(lambda dr: dr.find_element(By.ID, "player").get_attribute("src").endswith("/api/library/audio/2"))
        assert driver.find_element(By.ID, "now-playing").text == "track2"
        wait.until(lambda dr: dr.execute_script("return document.getElementById('player').readyState") >= 1)
        assert driver.execute_script("return document.getElementById('player').duration") == pytest.approx(2.0, abs=0.05)
        for field, value in (("v-min", "0.6"), ("a-max", "0.5")):  # positive and calm: tracks 3 and 4
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        wait.until(lambda dr: dr.find_element(By.ID, "count").text == "2 of 5 tracks")
        href = driver.find_element(By.ID, "export").get_attribute("href")
        status, body, _ = _get(href)
        assert status == 200
        assert [ln for ln in body.decode().splitlines() if not ln.startswith("#")] == [
            str((d / "music" / f"track{i}.wav").resolve()) for i in (3, 4)]
        driver.save_screenshot(str(d / "library-page.png"))  # the test's artifact
        assert (d / "library-page.png").stat().st_size > 10_000
    finally:
        driver.quit()
