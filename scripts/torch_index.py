"""Where `make setup` installs torch from: prints pip's options for it (stdout) and why (stderr).

- An NVIDIA GPU (``nvidia-smi -L`` lists one): pip's default index, whose Linux torch is the CUDA
  build. Nothing is fetched to decide.
- No GPU: PyTorch's CPU wheel index (``--index-url URL``) if it offers a torch for this Python and
  platform. Only that index is asked, through pip's own network settings (proxy, certificates,
  trusted hosts) but none of its other package sources.
- No GPU and that index cannot be reached (or offers no torch here): pip's default index and
  find-links as configured, with a warning that they may hold the CUDA build.

Usage: ``python scripts/torch_index.py [CPU_INDEX_URL]`` with the python of the environment to set
up (its pip asks). An empty URL: the default index on every machine.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 10  # per connection attempt of pip (no retries)
NETWORK = ("proxy", "cert", "client-cert", "trusted-host")  # pip settings passed on to the probe
SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")  # left out


def say(text: str) -> None:
    print(f"setup: {text}", file=sys.stderr)


def nvidia_gpus() -> tuple[list[str], str]:
    """The GPUs ``nvidia-smi -L`` lists, and what was found."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], "nvidia-smi not found"
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return [], f"nvidia-smi -L failed: {err}"
    gpus = [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if done.returncode != 0 or not gpus:
        said = (done.stdout + done.stderr).strip().splitlines()
        return [], f"nvidia-smi -L lists no GPU (exit {done.returncode}{': ' + said[0] if said else ''})"
    return gpus, f"nvidia-smi -L: {gpus[0]}" + (f" and {len(gpus) - 1} more" if len(gpus) > 1 else "")


def pip_network_options() -> list[str]:
    """pip's proxy, certificate and trusted-host settings from its configuration, as options."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "config", "list"], capture_output=True, text=True, timeout=60)
    options = []
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        if name in NETWORK and value:
            for item in str(ast.literal_eval(value)).split():
                options += [f"--{name}", item]
    return options


def offers_torch(url: str) -> tuple[bool, str]:
    """Whether the index at ``url`` lists a torch that pip could install here."""
    env = {k: v for k, v in os.environ.items() if k not in SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull  # no configured index or find-links: only this one
    probe = [sys.executable, "-m", "pip", "--disable-pip-version-check", "index", "versions", "torch"]
    probe += ["--index-url", url, "--retries", "0", "--timeout", str(PROBE_TIMEOUT_S)]
    try:
        done = subprocess.run(
            [*probe, *pip_network_options()], capture_output=True, text=True, timeout=120, env=env
        )
    except subprocess.TimeoutExpired:
        return False, "no answer within 120 s"
    if done.returncode == 0:
        return True, done.stdout.strip().splitlines()[0]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return False, errors[-1] if errors else f"pip exit {done.returncode}"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else CPU_INDEX
    gpus, found = nvidia_gpus()
    if gpus:
        say(f"NVIDIA GPU ({found}): torch from pip's default index (its CUDA build)")
        return 0
    if not url:
        say(f"no NVIDIA GPU ({found}), no CPU index given: torch from pip's default index")
        return 0
    ok, answer = offers_torch(url)
    if ok:
        say(f"no NVIDIA GPU ({found}): torch's CPU build from {url} ({answer})")
        print(f"--index-url {url}")
        return 0
    say(
        f"no NVIDIA GPU ({found}), and {url} cannot be reached or offers no torch here ({answer}): "
        "torch from pip's default index and find-links instead (on Linux the default index's torch "
        "is the CUDA build, several GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
