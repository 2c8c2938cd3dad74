# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm per-task time: trek10.ec2ssm.ssm_ssh vs the builtin ssh plugin straight to the same sshd.

One sandbox instance, one host, two connections to the *same* sshd:

``ssm_ssh``   ``ansible_connection: trek10.ec2ssm.ssm_ssh`` -- the SSM tunnel (EIC key push,
              StartSession, our data channel through the sandbox's websocket data plane).
``direct``    ``ansible_connection: ssh`` with ``ProxyCommand=ip netns exec <instance netns>
              python3 relay.py %h %p``: a byte relay into the instance's network namespace, the
              shortest route a controller could have to that sshd. Its key is pushed through the
              sandbox's EIC API just before the master logs in.

Both use the same ssh_args (ControlPersist) and pipelining setting. A warm-up run opens each
ControlPersist master; then playbooks of ``--few`` and ``--many`` tasks run against the warm
master, alternating between the two connections, ``--repeat`` times. Per-task time is
``(T_many - T_few) / (many - few)``, which cancels ansible-playbook's start-up and play set-up;
the median over the repeats is reported with the ratio ssm_ssh / direct.

Usage (issue #7 folds it into ``make bench``)::

    python bench/warm_tasks.py [--state-dir DIR] [--module command|raw|ping] [--pipelining]
                               [--few 5] [--many 45] [--repeat 5] [--json out.json]

Without ``--state-dir`` it starts (and stops) a private sandbox with one instance. Needs root
(network namespaces), like the sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SANDBOX = "ansible_collections.trek10.ec2ssm.tests.sandbox"
RELAY = """\
import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)
threading.Thread(target=upstream, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def _env_from_script(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _sep, value = line[len("export ") :].partition("=")
            env[name] = value.strip("'\"")
    return env


@contextlib.contextmanager
def sandbox(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="ec2ssm-bench-") as tmp:
        state = Path(tmp) / "sandbox"
        command = [sys.executable, "-m", SANDBOX]
        subprocess.run([*command, "up", "--instances", "1", "--state-dir", str(state)], check=True)
        try:
            yield state
        finally:
            subprocess.run([*command, "down", "--state-dir", str(state)], check=False)


def push_key(env: dict[str, str], instance_id: str, user: str, public_key: str) -> None:
    """SendSSHPublicKey through the sandbox's API (botocore, like any AWS client)."""
    code = (
        "import sys, boto3; boto3.client('ec2-instance-connect').send_ssh_public_key("
        "InstanceId=sys.argv[1], InstanceOSUser=sys.argv[2], SSHPublicKey=open(sys.argv[3]).read())"
    )
    subprocess.run([sys.executable, "-c", code, instance_id, user, public_key], env=env, check=True)


def playbook(path: Path, tasks: int, module: str) -> None:
    action = {"command": {"ansible.builtin.command": "true"}, "raw": {"ansible.builtin.raw": "true"}}.get(
        module, {"ansible.builtin.ping": {}}
    )
    body = [{"name": f"t{n}", **action, "changed_when": False} for n in range(tasks)]
    play = [{"name": "bench", "hosts": "all", "gather_facts": False, "tasks": body}]
    path.write_text(yaml.safe_dump(play))


def run(bin_dir: Path, inventory: Path, play: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(play)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def inventories(work: Path, target: dict[str, Any], pipelining: bool) -> dict[str, Path]:
    """One inventory file per connection, both to ``target``'s sshd with the same ssh settings."""
    relay = f"ip netns exec {target['netns']} {sys.executable} {work / 'relay.py'} %h %p"
    common = {
        "ansible_user": target["os_user"],
        "ansible_python_interpreter": "auto_silent",
        "ansible_pipelining": pipelining,
        "ansible_ssh_args": "-C -o ControlMaster=auto -o ControlPersist=10m",
    }
    hosts = {
        "ssm_ssh": {
            "ansible_connection": "trek10.ec2ssm.ssm_ssh",
            "ansible_host": target["instance_id"],
            **common,
        },
        "direct": {
            "ansible_connection": "ssh",
            "ansible_host": target["private_address"],
            "ansible_ssh_private_key_file": str(work / "direct"),
            "ansible_ssh_common_args": (
                f"-o ProxyCommand='{relay}' -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
            **common,
        },
    }
    paths = {}
    for name, host in hosts.items():
        paths[name] = work / f"{name}.yml"
        paths[name].write_text(yaml.safe_dump({"all": {"hosts": {name: host}}}))
    return paths


def stop_masters(control_path_dir: Path) -> None:
    for socket_path in control_path_dir.glob("*"):
        command = ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "bench"]
        subprocess.run(command, capture_output=True, check=False)


def measure(args: argparse.Namespace, state: Path, work: Path) -> dict[str, list[float]]:
    """Per-task seconds per connection, one sample per repeat."""
    aws_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    aws_env.update(_env_from_script(state / "env.sh"))
    target = next(i for i in json.loads((state / "instances.json").read_text()) if i.get("sshd"))
    (work / "relay.py").write_text(RELAY)
    (work / "ansible.cfg").write_text("[defaults]\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "direct")], check=True)
    paths = inventories(work, target, args.pipelining)
    env = {
        **{k: v for k, v in aws_env.items() if not k.startswith("ANSIBLE_")},
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
        "ANSIBLE_EC2SSM_KNOWN_HOSTS_FILE": str(work / "known_hosts"),
        "ANSIBLE_NOCOLOR": "1",
    }
    plays = {}
    for count in (1, args.few, args.many):
        plays[count] = work / f"play-{count}.yml"
        playbook(plays[count], count, args.module)
    bin_dir = Path(sys.executable).parent
    samples: dict[str, list[float]] = {name: [] for name in paths}
    try:
        push_key(aws_env, target["instance_id"], target["os_user"], str(work / "direct.pub"))
        for name in paths:  # warm-up: open both masters (the direct one within the key's 60 s)
            run(bin_dir, paths[name], plays[1], env)
        for _round in range(args.repeat):
            for name in paths:
                few = run(bin_dir, paths[name], plays[args.few], env)
                many = run(bin_dir, paths[name], plays[args.many], env)
                samples[name].append((many - few) / (args.many - args.few))
    finally:
        stop_masters(work / "cp")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state-dir", type=Path, help="use this running sandbox")
    parser.add_argument("--module", choices=("command", "raw", "ping"), default="command")
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--few", type=int, default=5)
    parser.add_argument("--many", type=int, default=45)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with sandbox(args.state_dir) as state, tempfile.TemporaryDirectory(prefix="ec2ssm-warm-") as tmp:
        samples = measure(args, state, Path(tmp))
    per_task = {name: statistics.median(values) for name, values in samples.items()}
    ratio = per_task["ssm_ssh"] / per_task["direct"]
    result: dict[str, Any] = {
        "module": args.module,
        "pipelining": args.pipelining,
        "few": args.few,
        "many": args.many,
        "repeat": args.repeat,
        "per_task_seconds": per_task,
        "samples": samples,
        "ratio_ssm_ssh_to_direct": ratio,
    }
    mode = f"{args.module}, pipelining {'on' if args.pipelining else 'off'}, median of {args.repeat}"
    print(
        f"warm per-task time ({mode}): ssm_ssh {per_task['ssm_ssh'] * 1000:.0f} ms, "
        f"direct ssh {per_task['direct'] * 1000:.0f} ms, ratio {ratio:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
