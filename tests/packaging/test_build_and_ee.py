"""The collection as users get it: the Galaxy tarball and an AWX execution environment.

These run the real tools (ansible-galaxy, ansible-builder) on a copy of this checkout:
- `ansible-galaxy collection build` leaves development content (tests, sandbox, benchmarks,
  tooling, virtualenvs) out of the tarball, and `ansible-galaxy collection install` accepts it;
- `ansible-builder introspect` finds our Python and system dependencies through
  meta/execution-environment.yml, and nothing asks for session-manager-plugin;
- `ansible-builder create` turns the example EE definition from the docs into a build context
  (no container engine needed) that installs the collection tarball.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Run the tools as a user would: without this checkout on PYTHONPATH or the collections path
# (otherwise ansible-galaxy sees the collection as already installed).
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH"}}


def _tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [p for p in listing.split("\0") if p and (ROOT / p).exists()]


@pytest.fixture(scope="module")
def built_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the collection from a clean copy of what git would commit (no local state)."""
    source = tmp_path_factory.mktemp("src") / "ec2ssm"
    for relative in _tracked_files():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--output-path", out, source],
        check=True,
        capture_output=True,
        env=CLEAN_ENV,
    )
    (tarball,) = out.glob("trek10-ec2ssm-*.tar.gz")
    return tarball


def test_tarball_holds_the_collection_and_no_development_content(built_tarball: Path) -> None:
    with tarfile.open(built_tarball) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"]) == ("trek10", "ec2ssm")
    assert info["dependencies"] == {"amazon.aws": ">=6.0.0"}
    assert info["license"] == ["GPL-3.0-or-later"]
    for required in (
        "README.md",
        "LICENSE",
        "meta/runtime.yml",
        "meta/execution-environment.yml",
        "requirements.txt",
        "bindep.txt",
    ):
        assert required in names, required
    for name in names:
        top = name.split("/", 1)[0]
        assert top not in {"tests", "bench", "tools", ".ci", ".venv", ".build", ".sandbox", ".cache"}, name
        assert "__pycache__" not in name, name
        assert not name.startswith(".sandbox"), name


def test_tarball_installs_with_ansible_galaxy(built_tarball: Path, tmp_path: Path) -> None:
    subprocess.run(
        [
            BIN / "ansible-galaxy",
            "collection",
            "install",
            "--offline",
            "--no-deps",
            "-p",
            tmp_path,
            built_tarball,
        ],
        check=True,
        capture_output=True,
        env=CLEAN_ENV,
    )
    installed = tmp_path / "ansible_collections" / "trek10" / "ec2ssm"
    assert (installed / "MANIFEST.json").is_file()
    assert (installed / "plugins").is_dir()


def test_builder_introspect_finds_our_dependencies(tmp_path: Path) -> None:
    collections = tmp_path / "ansible_collections" / "trek10"
    collections.mkdir(parents=True)
    shutil.copytree(ROOT / "meta", collections / "ec2ssm" / "meta")
    for name in ("requirements.txt", "bindep.txt", "galaxy.yml"):
        shutil.copy2(ROOT / name, collections / "ec2ssm" / name)
    result = subprocess.run(
        [BIN / "ansible-builder", "introspect", "--sanitize", tmp_path],
        check=True,
        capture_output=True,
        text=True,
    )
    report = result.stdout
    for needed in ("boto3", "botocore", "websockets", "openssh-client"):
        assert needed in report, f"{needed} missing from:\n{report}"
    assert "session-manager-plugin" not in report
    assert "from collection trek10.ec2ssm" in report


def test_example_execution_environment_builds_a_context(tmp_path: Path) -> None:
    definition = ROOT / "examples" / "execution-environment" / "execution-environment.yml"
    shutil.copy2(definition, tmp_path / "execution-environment.yml")
    # The definition expects the collection tarball next to it (as the docs explain).
    (tmp_path / "trek10-ec2ssm-0.1.0.tar.gz").write_bytes(b"placeholder for the build context check")
    subprocess.run(
        [
            BIN / "ansible-builder",
            "create",
            "-f",
            "execution-environment.yml",
            "--context",
            "ctx",
            "--output-filename",
            "Containerfile",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={**CLEAN_ENV, "ANSIBLE_NOCOLOR": "1"},
    )
    context = tmp_path / "ctx"
    containerfile = (context / "Containerfile").read_text()
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    names = [entry["name"] for entry in requirements["collections"]]
    assert "collections/trek10-ec2ssm-0.1.0.tar.gz" in names
    assert "amazon.aws" in names
    assert (context / "_build" / "collections" / "trek10-ec2ssm-0.1.0.tar.gz").is_file()
    assert "ansible-galaxy collection install" in containerfile
    assert "session-manager-plugin" not in containerfile
    # ansible-core 2.19 (meta/runtime.yml's minimum) on a Python it supports, installed by pip
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert re.search(r'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2\.19[^"]* ansible-runner"', containerfile)
    # the collection's own requirements are added at build time by introspection
    assert "introspect.py introspect" in containerfile
