"""The release artifacts: an sdist, a wheel built from it without Node.js, their metadata,
and one version for the Python package and the npm package."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from jupyter_channels import __version__

from .support import REPO_ROOT

TOOLS = ("npm", "node")


def without_node(path: str) -> str:
    """``path`` without the directories that hold npm or node."""
    dirs = path.split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not any((Path(d) / t).exists() for t in TOOLS))


def run(args: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built by pip from the sdist of this checkout, with no npm or node on PATH."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(REPO_ROOT)])
    (sdist,) = out.glob("*.tar.gz")
    path = without_node(os.environ["PATH"])
    assert shutil.which("npm", path=path) is None
    assert shutil.which("node", path=path) is None
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)],
        env={**os.environ, "PATH": path},
    )
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def test_a_wheel_built_from_the_sdist_without_node_carries_the_built_front_end(
    wheel: zipfile.ZipFile,
) -> None:
    names = wheel.namelist()
    for asset in ("widget.js", "widget.css"):
        assert f"jupyter_channels/static/{asset}" in names
        assert wheel.getinfo(f"jupyter_channels/static/{asset}").file_size > 0


def test_the_wheel_carries_the_license_the_type_marker_and_the_server_config(
    wheel: zipfile.ZipFile,
) -> None:
    names = wheel.namelist()
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(license_file).decode()
    assert text.startswith("BSD 3-Clause License")
    assert "jupyter-channels contributors" in text
    assert "jupyter_channels/py.typed" in names
    config = f"jupyter_channels-{__version__}.data/data/etc/jupyter/jupyter_server_config.d/"
    enabled = json.loads(wheel.read(config + "jupyter_channels.json"))
    assert enabled == {"ServerApp": {"jpserver_extensions": {"jupyter_channels": True}}}


def test_anywidget_is_a_dependency_and_the_widget_extra_still_installs(
    wheel: zipfile.ZipFile,
) -> None:
    meta = metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("anywidget") and ";" not in r for r in requires), requires
    assert "widget" in (meta.get_all("Provides-Extra") or [])


def test_the_metadata_names_the_license_version_urls_and_classifiers(
    wheel: zipfile.ZipFile,
) -> None:
    meta = metadata(wheel)
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "BSD-3-Clause"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Issues"} <= urls.keys()
    assert meta["Author"]
    assert meta["Keywords"]
    classifiers = set(meta.get_all("Classifier") or [])
    assert {
        "Development Status :: 4 - Beta",
        "Framework :: Jupyter",
        "Framework :: Jupyter :: JupyterLab :: 4",
        "License :: OSI Approved :: BSD License",
        "Operating System :: OS Independent",
        *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
    } <= classifiers


def test_the_npm_package_has_the_python_packages_version() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    assert package["version"] == __version__
    assert lock["version"] == lock["packages"][""]["version"] == __version__


def extra(meta: Message, name: str) -> set[str]:
    """The distributions an extra adds, by name."""
    marker = f"extra == '{name}'"
    return {
        re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower()
        for r in meta.get_all("Requires-Dist") or []
        if r.endswith(marker)
    }


def test_the_demo_extra_brings_jupyterlab_and_none_of_the_test_tools(
    wheel: zipfile.ZipFile,
) -> None:
    meta = metadata(wheel)
    demo = extra(meta, "demo")
    assert {"jupyterlab", "notebook", "matplotlib"} <= demo
    assert {"pytest", "playwright", "mypy", "py-spy", "ruff"} <= extra(meta, "test")
    assert not demo & {"pytest", "playwright", "mypy", "py-spy", "ruff", "redis"}
