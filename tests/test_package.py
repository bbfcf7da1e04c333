"""What an installed (not editable) inspector holds, and what the serving path imports."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


def test_the_wheel_holds_templates_migrations_and_every_model_package(tmp_path):
    pytest.importorskip("setuptools")
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
    names = set(zipfile.ZipFile(tmp_path / "dist" / build.stdout.split()[-1]).namelist())
    templates = {f"inspector/templates/{p.name}" for p in (REPO / "inspector" / "templates").iterdir()}
    assert templates and templates <= names
    assert "inspector/migrations/versions/0002_workers.py" in names
    packages = {f"{p.relative_to(REPO).as_posix()}" for p in (REPO / "inspector").rglob("__init__.py")}
    assert packages <= names, sorted(packages - names)


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
import inspector.cli, inspector.inference, inspector.watcher, inspector.web, inspector.bundle
from inspector import models
models.load_serving()  # what loading any bundle does
training = sorted(m for m in sys.modules if m.startswith("inspector.") and
                  (m == "inspector.training" or m.endswith(".fit") or m == "inspector.models.autoencoder.fit"))
print(training)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_model_registry_and_config_do_not_load_tensorflow():
    code = """
import sys
from inspector.config import resolve_pipeline
from inspector import models
resolve_pipeline("screw"), models.get("compact").keys
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "cv2")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
