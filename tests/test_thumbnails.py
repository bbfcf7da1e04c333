"""QA's list shows a part with no overlay (a good part with no heat, `watch --pictures flagged`)
by its photo shrunk on request: a JPEG of at most 256 pixels, not the full photo."""

import numpy as np
from sqlalchemy import update

from inspector.cv_setup import cv2
from inspector.store import Inspection, Store
from inspector.web import create_app
from test_pictures_choice import watch


def test_a_part_without_overlay_is_listed_by_its_photo_shrunk(tiny_bundle, tmp_path):
    done, out, db = watch(tmp_path, tiny_bundle, "flagged")
    ok = next(row for row in done if row["verdict"] == "ok")
    bad = next(row for row in done if row["verdict"] == "defect")
    app = create_app(str(db), out)
    client = app.test_client()
    listing = client.get("/").data
    assert f'src="/inspections/{ok["id"]}/thumbnail"'.encode() in listing
    assert f'src="/inspections/{bad["id"]}/picture/overlay"'.encode() in listing  # a flagged part: its overlay

    response = client.get(f"/inspections/{ok['id']}/thumbnail")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Content-Security-Policy"]
    shrunk = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_UNCHANGED)
    photo = cv2.imread(str(out / ok["stored_path"]), cv2.IMREAD_GRAYSCALE)
    assert shrunk.ndim == 2 and max(shrunk.shape) == 256 and shrunk.shape[0] * photo.shape[1] == shrunk.shape[1] * photo.shape[0]
    expected = cv2.resize(photo, shrunk.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - expected).mean() < 3  # the photo, not another picture
    assert len(response.data) < (out / ok["stored_path"]).stat().st_size / 4

    # Asked again with its ETag: not decoded and sent again.
    again = client.get(f"/inspections/{ok['id']}/thumbnail", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    app.config["STORE"].close()


def test_a_thumbnail_is_only_made_of_an_image_under_out(tiny_bundle, tmp_path):
    done, out, db = watch(tmp_path, tiny_bundle, "flagged")
    good = [row for row in done if row["verdict"] == "ok"]
    # A photo replaced by something that is not an image; a row naming a file outside --out.
    (out / good[0]["stored_path"]).write_bytes(b"<script>alert(1)</script>")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((out / good[1]["stored_path"]).read_bytes())
    store = Store(str(db))
    with store.session() as s, s.begin():
        s.execute(update(Inspection).where(Inspection.id == good[1]["id"]).values(stored_path=str(outside)))
    store.close()
    app = create_app(str(db), out)
    client = app.test_client()
    assert client.get(f"/inspections/{good[0]['id']}/thumbnail").status_code == 404
    assert client.get(f"/inspections/{good[1]['id']}/thumbnail").status_code == 404
    assert f'/inspections/{good[1]["id"]}/thumbnail'.encode() not in client.get("/").data
    assert client.get(f"/inspections/{good[2]['id']}/thumbnail").status_code == 200
    assert client.get("/inspections/999999/thumbnail").status_code == 404
    app.config["STORE"].close()
