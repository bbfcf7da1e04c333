"""What an installed (not editable) inspector holds, and what the serving path imports."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, SAMPLE
from inspector.models.pipeline_files import pipeline_names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip install .` would install, built from a copy of the package (no build/ in the repo)."""
    pytest.importorskip("setuptools")
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"
    shutil.copytree(REPO / "inspector", source / "inspector", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))",
         str(tmp_path / "dist")],
        cwd=source, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    return tmp_path / "dist" / build.stdout.split()[-1]


def test_the_wheel_holds_templates_migrations_pipelines_and_every_model_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"inspector/templates/{p.name}" for p in (REPO / "inspector" / "templates").iterdir()}
    assert templates and templates <= names
    assert "inspector/migrations/versions/0002_workers.py" in names
    pipelines = {f"inspector/pipelines/{name}.toml" for name in pipeline_names()}
    assert "inspector/pipelines/screw.toml" in pipelines and pipelines <= names
    packages = {f"{p.relative_to(REPO).as_posix()}" for p in (REPO / "inspector").rglob("__init__.py")}
    assert packages <= names, sorted(packages - names)


@pytest.mark.slow  # installs the dependencies from the package registry into a new venv (a minute or more)
def test_a_wheel_installed_in_a_fresh_venv_trains_with_the_default_pipeline(wheel, tmp_path):
    """`pip install inspector-*.whl` into a new venv (dependencies from the registry, ~1 min), then
    `inspector train` with the default pipeline, run away from the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    train = subprocess.run([str(venv / "bin" / "inspector"), "train", str(SAMPLE / "train" / "good"), "--out", "m",
                            "--epochs", "2"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "pipeline       screw (denoising_autoencoder)" in train.stdout
    meta = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert meta["pipeline"]["name"] == "screw"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import inspector; print(inspector.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert str(venv) in where.stdout, where.stdout  # the installed copy, not the repository's


def test_templates_load_from_the_package():
    from inspector.web import create_app

    app = create_app("sqlite://", REPO)
    try:
        for name in ("layout.html", "inspections.html", "inspection.html", "summary.html", "style.css"):
            assert app.jinja_env.get_template(name) is not None
    finally:
        app.config["STORE"].close()


def test_serving_never_imports_training_code():
    """The daemon, `score` and `serve` load bundles of every architecture without fitting code."""
    code = """
import sys
import inspector.cli, inspector.inference, inspector.daemon, inspector.web, inspector.bundle
from inspector import models
models.load_serving()  # what loading any bundle does
training = sorted(m for m in sys.modules if m.startswith("inspector.") and
                  (m == "inspector.usecases.training" or m.endswith((".fit", "_fit"))))
print(training)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_model_registry_and_config_do_not_load_tensorflow():
    code = """
import sys
from inspector import models
from inspector.models.pipeline_files import pipeline_from_dict, pipeline_names, resolve_pipeline
for name in pipeline_names():
    data = resolve_pipeline(name).to_dict()
    if data["model"]["architecture"] == "denoising_autoencoder":
        data["model"]["nuisances"] = ["dust", "jpeg"]
    pipeline_from_dict(data)
for name in models.names():
    models.get(name).keys
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "cv2")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
