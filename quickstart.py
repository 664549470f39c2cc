"""Quickstart driver: needs only Python. Creates ./.venv, installs the project into it, then runs a job.

    python3 quickstart.py demo   # the main job on the embedded default: demo clips -> training -> a prediction
    python3 quickstart.py test   # the test suite (installs Debian's Chromium for the browser test when it can)
    python3 quickstart.py space  # the Gradio demo app on http://127.0.0.1:7860 (hub_cards/space/app.py)

The install step is skipped when setup.cfg has not changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
PYTHON = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".affectverse-installed")
ACCELERATE = os.path.join(VENV, "bin", "accelerate")
# each job is a list of commands run in order; extra command-line arguments go to the last one
JOBS = {
    "demo": [
        # the quickstart's subset: 600 labelled clips (400 train / 50 validation / 150 test), no unlabelled pool
        [
            PYTHON,
            "-m",
            "modeling_affectverse.data.demo_data",
            "--output",
            "data/demo",
            "--num-clips",
            "600",
            "--num-unlabeled",
            "0",
        ],
        [
            ACCELERATE,
            "launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "training/sft.py",
            "--config",
            "configuration/recipes/demo.yaml",
        ],
    ],
    "test": [[PYTHON, "-m", "pytest", "-q", "tests"]],
    "space": [[PYTHON, os.path.join("hub_cards", "space", "app.py")]],
}
BROWSER_PACKAGES = ("chromium", "chromium-driver")  # Debian's: /usr/bin/chromium, /usr/bin/chromedriver


def ensure_environment() -> None:
    """Create the venv and (re)install `.[dev]` when setup.cfg changed."""
    if not os.path.exists(PYTHON):
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    with open(os.path.join(ROOT, "setup.cfg"), "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    if os.path.exists(STAMP) and open(STAMP).read() == digest:
        return
    print("installing affectverse[dev,space,deepspeed] into .venv (torch and friends: minutes at first)", flush=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    # DeepSpeed when it installs (the scale-out tests skip without it)
    if subprocess.run([PYTHON, "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev,space,deepspeed]"]).returncode:
        print("deepspeed did not install: its scale-out tests will be skipped", flush=True)
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev,space]"], check=True)
    with open(STAMP, "w") as handle:
        handle.write(digest)


def ensure_browser() -> None:
    """Debian's Chromium and ChromeDriver for the Space's browser test, installed with apt-get when missing and
    this user may (root). Otherwise say so: the browser test then skips with that reason."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print("Chromium is not installed and apt-get cannot be run here: the browser test will be skipped", flush=True)
        return
    print(f"installing {' '.join(BROWSER_PACKAGES)} with apt-get (for the browser test)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if (
        subprocess.run(["apt-get", "update", "-qq"], **quiet).returncode
        or subprocess.run(["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES], **quiet).returncode
    ):
        print("apt-get could not install Chromium: the browser test will be skipped", flush=True)


def main() -> int:
    job = sys.argv[1] if len(sys.argv) > 1 else ""
    if job not in JOBS:
        print(__doc__)
        return 2
    ensure_environment()
    if job == "test":
        ensure_browser()
    *first, last = JOBS[job]
    for command in first:
        if subprocess.run(command, cwd=ROOT).returncode:
            return 1
    return subprocess.run(last + sys.argv[2:], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
