"""QA's list shows a part with no overlay (a good part with no heat, `watch --pictures flagged`)
by its photo shrunk on request: a JPEG of at most 256 pixels, not the full photo."""

import os

import numpy as np
import pytest
from sqlalchemy import update

from inspector.cv_setup import cv2
from inspector.formats import files
from inspector.store import Inspection, Store
from inspector.web import create_app
from test_pictures_choice import watch


@pytest.fixture
def judged(tiny_bundle, tmp_path):
    """Six sample parts judged with pictures for flagged parts only; the QA app on them."""
    done, out, db = watch(tmp_path, tiny_bundle, "flagged")
    app = create_app(str(db), out)
    yield done, out, db, app.test_client()
    app.config["STORE"].close()


def shrunk(response) -> np.ndarray:
    assert response.status_code == 200 and response.mimetype == "image/jpeg", response.status_code
    return cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_a_part_without_overlay_is_listed_by_its_photo_shrunk(judged):
    done, out, db, client = judged
    ok = next(row for row in done if row["verdict"] == "ok")
    bad = next(row for row in done if row["verdict"] == "defect")
    listing = client.get("/").data
    assert f'src="/inspections/{ok["id"]}/thumbnail"'.encode() in listing
    assert f'src="/inspections/{bad["id"]}/picture/overlay"'.encode() in listing  # a flagged part: its overlay

    # A photo larger than the thumbnail and not square, 16 bits: shrunk to 256 x 128 by area.
    photo = out / ok["stored_path"]
    wide = (np.add.outer(np.arange(300) * 100, np.arange(600) * 50) % 65536).astype(np.uint16)
    cv2.imwrite(str(photo.with_suffix(".tmp.png")), wide)
    os.replace(photo.with_suffix(".tmp.png"), photo)
    response = client.get(f"/inspections/{ok['id']}/thumbnail")
    assert response.headers["Content-Security-Policy"] and response.headers["ETag"]
    assert response.headers["Cache-Control"] == "private, no-cache"  # asked again each time, by its ETag
    picture = shrunk(response)
    assert picture.ndim == 2 and picture.shape == (128, 256)
    expected = cv2.resize(wide, (256, 128), interpolation=cv2.INTER_AREA) / 65535 * 255
    assert np.abs(picture.astype(float) - expected).mean() < 3  # the photo, not another picture
    assert len(response.data) < photo.stat().st_size / 4

    # Asked again with its ETag: not sent again; with another, sent.
    etag = response.headers["ETag"]
    again = client.get(f"/inspections/{ok['id']}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    other = client.get(f"/inspections/{ok['id']}/thumbnail", headers={"If-None-Match": '"1-2-3"'})
    assert other.status_code == 200 and other.data == response.data

    # The photo replaced in place by another of the same size, its date kept: shrunk anew.
    grey = (wide >> 8).astype(np.uint8)
    photo.write_bytes(cv2.imencode(".bmp", grey)[1].tobytes())
    before = client.get(f"/inspections/{ok['id']}/thumbnail")
    dates = photo.stat()
    photo.write_bytes(cv2.imencode(".bmp", 255 - grey)[1].tobytes())  # a BMP's size is its pixels'
    os.utime(photo, ns=(dates.st_atime_ns, dates.st_mtime_ns))
    assert (photo.stat().st_size, photo.stat().st_mtime_ns) == (dates.st_size, dates.st_mtime_ns)
    after = client.get(f"/inspections/{ok['id']}/thumbnail", headers={"If-None-Match": before.headers["ETag"]})
    assert np.abs(shrunk(after).astype(int) - (255 - shrunk(before).astype(int))).mean() < 3


def test_float_photos_are_clipped_to_black_and_white(judged):
    done, out, db, client = judged
    ok = next(row for row in done if row["verdict"] == "ok")
    frame = np.full((400, 400), -0.5, np.float32)
    frame[:, 200:] = 1.5  # beyond white
    ok_tiff, data = cv2.imencode(".tiff", frame)
    assert ok_tiff
    (out / ok["stored_path"]).write_bytes(data.tobytes())
    picture = shrunk(client.get(f"/inspections/{ok['id']}/thumbnail"))
    assert picture.shape == (256, 256)
    assert picture[:, :120].max() <= 3 and picture[:, 136:].min() >= 252


def test_a_thumbnail_is_only_made_of_a_judged_image_under_out_within_the_size_limit(judged, tmp_path, monkeypatch):
    done, out, db, client = judged
    good = [row for row in done if row["verdict"] == "ok"]
    # A photo replaced by something that is not an image; a row naming a file outside --out; a
    # row recorded as an error.
    (out / good[0]["stored_path"]).write_bytes(b"<script>alert(1)</script>")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((out / good[1]["stored_path"]).read_bytes())
    store = Store(str(db))
    with store.session() as s, s.begin():
        s.execute(update(Inspection).where(Inspection.id == good[1]["id"]).values(stored_path=str(outside)))
        s.execute(update(Inspection).where(Inspection.id == good[2]["id"])
                  .values(status="error", verdict="error", error_reason="cannot decode"))
    store.close()
    listing = client.get("/").data
    for row in good:
        assert client.get(f"/inspections/{row['id']}/thumbnail").status_code == 404, row["source_name"]
    assert f'/inspections/{good[1]["id"]}/thumbnail'.encode() not in listing
    assert f'/inspections/{good[2]["id"]}/thumbnail'.encode() not in listing  # an error row: "not judged"
    assert client.get("/inspections/999999/thumbnail").status_code == 404


def test_a_photo_over_the_size_limit_is_not_read(judged, monkeypatch):
    done, out, db, client = judged
    ok = next(row for row in done if row["verdict"] == "ok")
    assert client.get(f"/inspections/{ok['id']}/thumbnail").status_code == 200
    monkeypatch.setattr(files, "MAX_FILE_BYTES", (out / ok["stored_path"]).stat().st_size - 1)
    assert client.get(f"/inspections/{ok['id']}/thumbnail").status_code == 404
