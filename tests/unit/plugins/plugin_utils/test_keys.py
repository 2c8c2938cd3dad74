# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-run key pair and users' keys, checked with real forks, real ssh-keygen and real ansible."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import keys

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
FORKS = 12


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _fork_worker(
    local_tmp: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:
    barrier.wait()  # all forks ask at the same moment
    pair = keys.run_key_pair(local_tmp)
    with open(pair.public_key_file, encoding="ascii") as handle:
        results.put((pair.private_key_file, handle.read(), os.stat(pair.private_key_file).st_ino))


def test_concurrent_forks_create_exactly_one_key_pair(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # what ansible-core uses for its workers
    barrier = context.Barrier(FORKS)
    results = context.Queue()
    workers = [
        context.Process(target=_fork_worker, args=(str(tmp_path), barrier, results))
        for _number in range(FORKS)
    ]
    for worker in workers:
        worker.start()
    seen = [results.get(timeout=60) for _worker in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len({private for private, _pub, _ino in seen}) == 1
    assert len({public for _priv, public, _ino in seen}) == 1
    assert len({inode for _priv, _pub, inode in seen}) == 1  # nobody replaced the file later
    directory = tmp_path / keys.RUN_SUBDIR
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "id_ed25519", "id_ed25519.pub"]


def test_key_files_are_private(tmp_path: Path) -> None:
    pair = keys.run_key_pair(str(tmp_path))
    assert mode(tmp_path / keys.RUN_SUBDIR) == 0o700
    assert mode(pair.private_key_file) == 0o600
    assert mode(pair.public_key_file) == 0o600


def test_the_same_run_gets_the_same_pair(tmp_path: Path) -> None:
    first = keys.run_key_pair(str(tmp_path))
    second = keys.run_key_pair(str(tmp_path))
    assert first == second
    assert Path(first.public_key_file).read_text() == Path(second.public_key_file).read_text()


@needs_ssh_keygen
def test_the_pair_is_an_ed25519_key_openssh_accepts(tmp_path: Path) -> None:
    pair = keys.run_key_pair(str(tmp_path))
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", pair.private_key_file], check=True, capture_output=True, text=True
    ).stdout.split()
    published = Path(pair.public_key_file).read_text().split()
    assert derived[:2] == published[:2]
    assert published[0] == "ssh-ed25519"
    assert published[2] == keys.KEY_COMMENT
    # SendSSHPublicKey requires at least 80 characters.
    assert len(Path(pair.public_key_file).read_text().strip()) >= 80


def test_the_pair_is_removed_with_ansibles_run_directory(tmp_path: Path) -> None:
    """ansible-core deletes DEFAULT_LOCAL_TMP at exit (atexit in the process that created it)."""
    script = (
        "from ansible import constants as C\n"
        "from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import keys\n"
        "print(keys.run_key_pair(C.DEFAULT_LOCAL_TMP).private_key_file)\n"
    )
    root = str(Path(keys.__file__).parents[5])  # the directory holding ansible_collections/
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "PYTHONPATH": pythonpath}
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env)
    private_key = Path(out.stdout.strip())
    assert private_key.is_relative_to(tmp_path)
    assert not private_key.exists()
    assert list(tmp_path.iterdir()) == []


@needs_ssh_keygen
def test_a_users_key_is_pushed_from_its_pub_file(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert keys.public_key_for(str(key), str(tmp_path / "run")) == str(key) + ".pub"


@needs_ssh_keygen
@pytest.mark.parametrize(("key_type", "extra"), [("ed25519", []), ("rsa", ["-b", "2048", "-m", "PEM"])])
def test_a_users_public_key_is_derived_when_there_is_no_pub_file(
    tmp_path: Path, key_type: str, extra: list[str]
) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, *extra, "-N", "", "-f", str(key)], check=True)
    expected = (tmp_path / "key.pub").read_text().split()[:2]
    (tmp_path / "key.pub").unlink()
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    public = keys.public_key_for(str(key), str(run))
    assert Path(public).parent == run / keys.RUN_SUBDIR
    assert Path(public).read_text().split()[:2] == expected
    assert mode(public) == 0o600


@needs_ssh_keygen
def test_an_encrypted_key_without_pub_file_asks_for_it(tmp_path: Path) -> None:
    key = tmp_path / "secret"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(key)], check=True)
    (tmp_path / "secret.pub").unlink()
    with pytest.raises(keys.KeyMaterialError, match=r"secret\.pub"):
        keys.public_key_for(str(key), str(tmp_path))


@needs_ssh_keygen
def test_key_types_ec2_instance_connect_refuses_are_named(tmp_path: Path) -> None:
    key = tmp_path / "ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(keys.KeyMaterialError, match="only ssh-ed25519 and ssh-rsa"):
        keys.public_key_for(str(key), str(tmp_path))
    (tmp_path / "ecdsa.pub").unlink()
    with pytest.raises(keys.KeyMaterialError, match="only ed25519 and RSA"):
        keys.public_key_for(str(key), str(tmp_path))


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyMaterialError, match="nothing-here"):
        keys.public_key_for(str(tmp_path / "nothing-here"), str(tmp_path))


def test_known_hosts_directory_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = keys.known_hosts_path("~/.ansible/ec2ssm/known_hosts")
    assert path == str(tmp_path / ".ansible" / "ec2ssm" / "known_hosts")
    assert mode(tmp_path / ".ansible" / "ec2ssm") == 0o700


def test_helper_stderr_is_one_file_per_destination_read_from_an_offset(tmp_path: Path) -> None:
    """A master's helper outlives the ssh run that started it: each run reads what was appended
    during its own run, from the file every run for that destination shares."""
    local_tmp = str(tmp_path)
    path = keys.helper_stderr_path(local_tmp, "i-0123456789abcdef0", "ec2-user", 22)
    assert path == keys.helper_stderr_path(local_tmp, "i-0123456789abcdef0", "ec2-user", 22)
    others = {
        keys.helper_stderr_path(local_tmp, "i-0123456789abcdef1", "ec2-user", 22),
        keys.helper_stderr_path(local_tmp, "i-0123456789abcdef0", "ubuntu", 22),
        keys.helper_stderr_path(local_tmp, "i-0123456789abcdef0", "ec2-user", 2222),
    }
    assert path not in others
    assert len(others) == 3
    assert mode(os.path.dirname(path)) == 0o700

    assert keys.stderr_size(path) == 0  # no helper ran yet
    assert keys.read_stderr_since(path, 0) == ""
    with open(path, "a", encoding="utf-8") as handle:  # what ssh's "2>>" does
        handle.write("first run\n")
    offset = keys.stderr_size(path)
    assert keys.read_stderr_since(path, offset) == ""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("trek10.ec2ssm: i-0123456789abcdef0: later \u00e9\n")
    assert keys.read_stderr_since(path, offset) == "trek10.ec2ssm: i-0123456789abcdef0: later \u00e9\n"


def test_helper_stderr_reads_at_most_the_newest_bytes(tmp_path: Path) -> None:
    path = keys.helper_stderr_path(str(tmp_path), "i-0123456789abcdef0", None, None)
    with open(path, "w", encoding="ascii") as handle:
        handle.write("d" * (keys.HELPER_STDERR_READ_LIMIT * 2) + "\nlast line\n")
    text = keys.read_stderr_since(path, 0)
    assert len(text) == keys.HELPER_STDERR_READ_LIMIT
    assert text.endswith("\nlast line\n")
