"""The part page at the speed of the line, in a real headless Chromium at 1366x768: labelling
by keys alone, the decision within the first screen, straight on to the next part, error rows
without decisions, one large picture whose view a key switches."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from inspector.cv_setup import cv2
from inspector.pictures import frame_overlay_image, heatmap_png, overlay_image
from inspector.store import Inspection, ModelRecord, Store, utcnow
from helpers import chromium, qa_server
from test_web import CHROMEDRIVER, CHROMIUM, heading, screenshot, wait_until

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="chromium and chromedriver are not installed (.ci/run installs them)")
FLAGGED = 12
KINDS = ["scratch on the head", "thread", "tip", "neck", "other"]


@pytest.fixture
def station(tmp_path):
    """Twelve flagged parts with their pictures, one file that could not be judged, a station's
    list of kinds; served on 127.0.0.1."""
    out = tmp_path / "out"
    day = out / "heatmaps" / "2026-12-04"
    day.mkdir(parents=True)
    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    store.set_defect_kinds("line1", KINDS)
    rng = np.random.default_rng(1)
    matrix = np.array([[0.5, 0, 0], [0, 0.5, 0]])  # photo (400 px) -> map (200 px)
    with store.session() as s, s.begin():
        model = ModelRecord(fingerprint="abcdef0123456789", name="screw", path="/models/screw", threshold=0.5)
        s.add(model)
        s.flush()
        for i in range(FLAGGED):
            photo = (cv2.GaussianBlur(rng.random((400, 400)), (0, 0), 4) * 255).astype(np.uint8)
            error = np.zeros((200, 200), np.float32)
            error[60:90, 100:130] = 0.9
            files = [day / f"{i}_photo.png", day / f"{i}_heatmap.png", day / f"{i}_overlay.jpg", day / f"{i}_crop.png"]
            cv2.imwrite(str(files[0]), photo)
            files[1].write_bytes(heatmap_png(error, 1.0))  # as the daemon writes it
            contours, _ = cv2.findContours((error > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.imwrite(str(files[2]), frame_overlay_image(photo, matrix, error, 1.0, list(contours)))
            cv2.imwrite(str(files[3]), overlay_image(error[..., None], error, 1.0))
            s.add(Inspection(source_path=f"/inbox/screw_{i:03d}.png", source_name=f"screw_{i:03d}.png",
                             content_hash=f"{i:064d}", status="done", verdict="defect", score=0.6 + i / 100,
                             threshold=0.5, received_at=utcnow() - timedelta(minutes=i),
                             scored_at=utcnow() - timedelta(minutes=i), stored_path=str(files[0]),
                             heatmap_path=str(files[1]), overlay_path=str(files[2]), crop_overlay_path=str(files[3]),
                             model_id=model.id, station="line1", processing_ms=15.0))
        s.add(Inspection(source_path="/inbox/cut.png", source_name="cut.png", content_hash="e" * 64,
                         status="error", verdict="error", error_reason="truncated PNG: the file ends early",
                         received_at=utcnow(), station="line1"))
    store.close()
    with qa_server(db, out) as url:
        yield url, db


@pytest.fixture
def laptop(tmp_path):
    """Chromium with a 1366x768 page: a QA station's laptop."""
    driver = chromium(tmp_path, (1366, 768))
    yield driver
    driver.quit()


def press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def shown_id(driver) -> int | None:
    """The id in the page's heading, or None while no page shows one."""
    words = (heading(driver) or "").split()
    return int(words[0].lstrip("#")) if words else None


def within_first_screen(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.top >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;", element_id)


def test_ten_flagged_parts_labelled_by_keys_alone(station, laptop, tmp_path):
    from selenium.webdriver.common.by import By

    url, db = station
    store = Store(str(db))
    newest = store.inspections(flagged=True, limit=1)[0].id
    laptop.get(f"{url}/inspections/{newest}")
    assert laptop.execute_script("return [window.innerWidth, window.innerHeight]") == [1366, 768]
    for element in ("confirm", "dismiss", "kinds", "picture"):
        assert within_first_screen(laptop, element), f"#{element} is below the fold at 1366x768"
    screenshot(laptop, "qa-part.png", tmp_path)
    laptop.find_element(By.ID, "reviewer").send_keys("ana")  # typed once: the page remembers it
    press(laptop, "\ue00c")  # Escape leaves the field, the keys are the page's again
    # Defect of kind 1, false alarm, defect with d then a kind, defect without a kind (d d), ...
    plan = [("1",), ("f",), ("d", "2"), ("d", "d"), ("3",), ("f",), ("5",), ("d", "4"), ("f",), ("2",)]
    expected = {}
    for keys in plan:
        before = shown_id(laptop)
        press(laptop, *keys)
        wait_until(laptop, lambda d: shown_id(d) not in (before, None))
        if keys == ("f",):
            expected[before] = ("ok", None)
        elif keys == ("d", "d"):
            expected[before] = ("defect", None)
        else:
            expected[before] = ("defect", KINDS[int(keys[-1]) - 1])
    assert len(expected) == 10
    # Each stored once, with its reviewer and kind.
    for inspection_id, (label, kind) in expected.items():
        reviews = store.get(inspection_id).reviews
        assert [(v.label, v.kind, v.reviewer) for v in reviews] == [(label, kind, "ana")], inspection_id
    # The page went on to the next unreviewed flagged part each time; `p` goes back to the one labelled last.
    last = list(expected)[-1]
    assert shown_id(laptop) not in expected
    press(laptop, "p")
    wait_until(laptop, lambda d: shown_id(d) == last)
    assert laptop.find_element(By.ID, "state").text == "confirmed"
    store.close()


def test_keys_switch_the_picture_and_show_themselves(station, laptop):
    from selenium.webdriver.common.by import By

    url, _ = station
    laptop.get(f"{url}/inspections/1")
    picture = laptop.find_element(By.ID, "picture")
    assert picture.get_attribute("src").endswith("/picture/overlay")
    assert laptop.execute_script("return arguments[0].naturalWidth", picture) == 400  # the photo's own size
    press(laptop, "h")
    assert picture.get_attribute("src").endswith("/picture/heatmap")
    # The browser draws the daemon's indexed-colour heatmap PNG, at the error map's size.
    wait_until(laptop, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                  picture) == 200)
    press(laptop, "u")
    assert picture.get_attribute("src").endswith("/picture/upright")
    assert laptop.find_element(By.ID, "full").get_attribute("href").endswith("/picture/upright")
    assert not laptop.find_element(By.ID, "keys").is_displayed()
    press(laptop, "?")
    assert "false alarm" in laptop.find_element(By.ID, "keys").text
    press(laptop, "n")
    wait_until(laptop, lambda d: shown_id(d) not in (1, None))


def test_an_error_row_shows_its_reason_and_no_decision(station, laptop, tmp_path):
    from selenium.webdriver.common.by import By

    url, db = station
    laptop.get(f"{url}/?verdict=error")
    card = laptop.find_element(By.CSS_SELECTOR, ".card")
    assert card.find_elements(By.TAG_NAME, "img") == []  # no broken image
    assert "truncated PNG" in card.text
    card.click()
    wait_until(laptop, lambda d: "cut.png" in (heading(d) or ""))
    assert "truncated PNG: the file ends early" in laptop.find_element(By.ID, "error-reason").text
    assert laptop.find_elements(By.ID, "confirm") == [] and laptop.find_elements(By.ID, "dismiss") == []
    press(laptop, "d", "d", "f")
    store = Store(str(db))
    row = store.inspections(verdict="error")[0]
    assert row.reviews == []
    with pytest.raises(ValueError, match="was not judged"):
        store.add_review(row.id, "defect", reviewer="ana")
    store.close()


def test_a_key_pressed_twice_labels_once_and_the_last_part_is_not_labelled_again(station, laptop):
    from selenium.webdriver.common.by import By

    url, db = station
    store = Store(str(db))
    waiting = [r.id for r in store.inspections(flagged=True)]
    for inspection_id in waiting[1:]:  # one part left to review
        store.add_review(inspection_id, "ok", reviewer="ana")
    laptop.get(f"{url}/inspections/{waiting[0]}")
    # Three presses of f at once (a key held down, a double press): one decision.
    laptop.execute_script("for (const repeat of [false, false, true]) document.dispatchEvent("
                          "new KeyboardEvent('keydown', {key: 'f', repeat, bubbles: true}));")
    wait_until(laptop, lambda d: d.find_elements(By.ID, "done"))
    assert [v.label for v in store.get(waiting[0]).reviews] == ["ok"]
    # Nothing is left: the page says so and offers no decision to a key pressed once more.
    assert laptop.find_elements(By.ID, "decision") == [] and laptop.find_elements(By.ID, "again")
    press(laptop, "f", "d", "d", "1")
    assert [v.label for v in store.get(waiting[0]).reviews] == ["ok"]
    with store.session() as s, s.begin():
        s.add(Inspection(source_path="/inbox/new.png", source_name="new.png", content_hash="f" * 64,
                         status="pending", station="line1"))
    pending = store.inspections(limit=1)[0]
    with pytest.raises(ValueError, match="still being judged"):
        store.add_review(pending.id, "ok")
    laptop.get(f"{url}/inspections/{pending.id}")
    assert "Being judged" in laptop.find_element(By.ID, "pending").text
    store.close()
