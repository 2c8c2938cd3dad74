"""The user documentation stays true to the files it quotes and the messages it explains.

- every relative link (and its #anchor) in the user docs resolves;
- the policy shown in docs/iam.md is docs/iam/controller-policy.json, and the inventory file shown
  in docs/awx.md is examples/awx's;
- docs/troubleshooting.md explains every AWS error code and botocore failure that
  plugins/plugin_utils/aws/errors.py gives specific advice for;
- the example execution environment names the collection tarball of the current version.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["docs/quickstart.md", "docs/awx.md", "docs/iam.md", "docs/troubleshooting.md"]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", markdown), re.M):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_and_anchors_resolve(doc: str) -> None:
    source = ROOT / doc
    text = _FENCE.sub("", source.read_text())
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (source.parent / path).resolve() if path else source
        missing = not linked.exists()
        if not missing and anchor and linked.suffix == ".md":
            missing = anchor not in _anchors(linked.read_text())
        if missing:
            broken.append(target)
    assert not broken, f"{doc}: {broken}"


def _code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.M | re.S)


def test_iam_doc_shows_the_tested_policy() -> None:
    shown = [json.loads(block) for block in _code_blocks((ROOT / "docs" / "iam.md").read_text(), "json")]
    assert json.loads((ROOT / "docs" / "iam" / "controller-policy.json").read_text()) in shown
    for policy in (ROOT / "docs" / "iam").glob("*.json"):
        assert json.loads(policy.read_text())["Statement"], policy


def test_awx_doc_shows_the_example_inventory_source() -> None:
    example = yaml.safe_load(
        (ROOT / "examples" / "awx" / "inventory" / "ec2ssm.ssm_instances.yml").read_text()
    )
    shown = [yaml.safe_load(block) for block in _code_blocks((ROOT / "docs" / "awx.md").read_text(), "yaml")]
    assert example in shown


def test_troubleshooting_covers_every_error_with_specific_advice() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    explained = [*errors._ADVICE_BY_CODE, *errors._TRANSPORT_BY_CLASS, "ThrottlingException"]
    assert [name for name in explained if name not in text] == []


def test_example_execution_environment_names_the_current_tarball() -> None:
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    definition = yaml.safe_load(
        (ROOT / "examples" / "execution-environment" / "execution-environment.yml").read_text()
    )
    tarball = f"trek10-ec2ssm-{version}.tar.gz"
    assert {"src": tarball, "dest": "collections"} in definition["additional_build_files"]
    assert f"collections/{tarball}" in [
        c["name"] for c in definition["dependencies"]["galaxy"]["collections"]
    ]
