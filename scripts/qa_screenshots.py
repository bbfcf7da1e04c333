"""Screenshots of the QA page for the docs, from the demo's database, in headless Chromium at
1366x768: a flagged part, the list, and the summary with the kinds' Pareto chart. QA's work is
done first with the page's own keys (a few flagged parts labelled, with kinds), so the summary
has something to show.

Usage (repository root, after `bash scripts/demo.sh demo`; needs chromium and chromium-driver):
    python scripts/qa_screenshots.py demo docs/images
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

KEYS = ["1", "f", "2", "1", "3", "1"]  # defect kinds by number, f a false alarm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="The demo's folder (inspector.db, line/).")
    parser.add_argument("out", type=Path, help="Where the PNG files go.")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from werkzeug.serving import make_server

    from inspector.store import Store
    from inspector.web import create_app

    db = f"sqlite:///{args.demo / 'inspector.db'}"
    store = Store(db)
    station = store.inspections(limit=1)[0].station
    store.set_defect_kinds(station, ["scratch on the head", "thread", "tip", "neck", "other"])
    store.close()
    app = create_app(db, args.demo / "line")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,768", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(f"{url}/?verdict=defect&review=unreviewed")
        driver.find_element(By.CSS_SELECTOR, ".card").click()
        time.sleep(1)
        driver.save_screenshot(str(args.out / "qa-part.png"))
        driver.find_element(By.ID, "reviewer").send_keys("ana")
        ActionChains(driver).send_keys("\ue00c").perform()
        for key in KEYS:
            before = driver.find_element(By.TAG_NAME, "h1").text
            ActionChains(driver).send_keys(key).perform()
            for _ in range(50):
                time.sleep(0.1)
                if driver.find_element(By.TAG_NAME, "h1").text != before:
                    break
        driver.get(f"{url}/")
        time.sleep(1)
        driver.save_screenshot(str(args.out / "qa-list.png"))
        driver.set_window_size(1366, 2300)
        driver.get(f"{url}/summary")
        time.sleep(2)
        driver.save_screenshot(str(args.out / "qa-summary.png"))
    finally:
        driver.quit()
        httpd.shutdown()
        app.config["STORE"].close()
    print(f"wrote {', '.join(p.name for p in sorted(args.out.glob('qa-*.png')))} in {args.out}")


if __name__ == "__main__":
    main()
