"""Installing: the wheel carries what streamsnn needs at run time, and `make setup` chooses where
torch comes from (scripts/torch_index.py) by the machine's GPU and the CPU index's reachability."""

import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import threading
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pip
import pytest

import streamsnn

ROOT = Path(__file__).resolve().parent.parent
TORCH_INDEX = ROOT / "scripts" / "torch_index.py"


# -- where torch comes from --------------------------------------------------------------------
class Index(BaseHTTPRequestHandler):
    """A PEP 503 simple index offering one torch wheel (``self.server.wheel``)."""

    def do_GET(self):
        self.server.asked.append(self.path)
        if self.path.rstrip("/") != "/simple/torch":
            self.send_error(404)
            return
        body = f'<html><body><a href="{self.server.wheel}">{self.server.wheel}</a></body></html>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    server.asked, server.wheel = [], "torch-2.13.0-py3-none-any.whl"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple"


def decide(tmp_path, url, nvidia_smi: str | None = None):
    """scripts/torch_index.py with only ``tmp_path/bin`` on PATH (a fake nvidia-smi printing
    ``nvidia_smi``'s lines there, if given): (pip options, message)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] || exit 2\n{nvidia_smi}\n')
        fake.chmod(0o755)
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run(
        [sys.executable, str(TORCH_INDEX), url], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr


def test_without_gpu_torch_comes_from_the_cpu_index(tmp_path, index):
    url = f"http://127.0.0.1:{index.server_port}/simple"
    options, said = decide(tmp_path, url)
    assert options == ["--index-url", url]
    assert "/simple/torch/" in index.asked
    assert "no NVIDIA GPU (nvidia-smi not found)" in said and f"CPU build from {url}" in said


def test_a_gpu_that_nvidia_smi_does_not_list_is_no_gpu(tmp_path, index):
    url = f"http://127.0.0.1:{index.server_port}/simple"
    options, said = decide(tmp_path, url, "echo 'No devices were found'; exit 6")
    assert options == ["--index-url", url]
    assert "lists no GPU (exit 6: No devices were found)" in said


def test_an_unreachable_cpu_index_falls_back_to_the_default_index(tmp_path):
    # the probe asks the CPU index alone: this machine's configured find-links and indexes (which
    # hold a torch) must not make an unreachable index look reachable
    url = closed_port_url()
    options, said = decide(tmp_path, url)
    assert options == []
    assert f"{url} cannot be reached" in said and "default index and find-links instead" in said


def test_an_index_without_a_torch_for_this_platform_falls_back(tmp_path, index):
    index.wheel = "torch-2.13.0-cp27-cp27m-win32.whl"
    url = f"http://127.0.0.1:{index.server_port}/simple"
    options, said = decide(tmp_path, url)
    assert options == [] and "/simple/torch/" in index.asked
    assert "offers no torch here" in said


def test_with_a_gpu_torch_comes_from_the_default_index_without_asking(tmp_path, index):
    url = f"http://127.0.0.1:{index.server_port}/simple"
    options, said = decide(tmp_path, url, "echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d1f)'")
    assert options == [] and index.asked == []
    assert "NVIDIA GPU (nvidia-smi -L: GPU 0: NVIDIA A100-SXM4-40GB" in said and "CUDA build" in said


def test_make_setup_installs_torch_with_the_decided_options(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    done = subprocess.run(
        ["make", "-n", "setup", f"VENV={tmp_path / 'venv'}", "TORCH_CPU_INDEX=http://127.0.0.1:9/simple"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.replace("\\\n", " ").splitlines()
    torch_line = next(line for line in lines if "torch_index.py" in line)
    assert '"http://127.0.0.1:9/simple"' in torch_line
    assert re.search(r"&&\s+\S+ -m pip install .*\$opts \"torch==", torch_line), torch_line
    assert not any("--quiet" in line for line in lines)


# -- the wheel ----------------------------------------------------------------------------------
def outside_env() -> dict[str, str]:
    """This environment without the checkout on the path or sensor folders of its own."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STREAMSNN_SENSORS", "VIRTUAL_ENV")
    }


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A wheel and sdist built from a copy of the package (the checkout stays clean), the wheel
    installed in a fresh venv whose dependencies (torch ...) are this environment's, by a .pth file."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT / "streamsnn", src / "streamsnn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = work / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # pip's --python (pip >= 22.3) installs into the venv without a pip of its own there
    own_pip = tuple(int(x) for x in pip.__version__.split(".")[:2]) < (22, 3)
    venv.EnvBuilder(with_pip=own_pip).create(work / "venv")
    python = work / "venv" / "bin" / "python"
    installer = (
        [str(python), "-m", "pip"] if own_pip else [sys.executable, "-m", "pip", "--python", str(python)]
    )
    wheels = sorted(dist.glob("*.whl"))
    done = subprocess.run(
        [*installer, "install", "--no-deps", "--no-index", *map(str, wheels)],
        cwd=work,
        env=outside_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    deps = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    (Path(purelib) / "streamsnn_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return {"dist": dist, "bin": python.parent, "cwd": elsewhere}


def in_venv(wheel_venv, *args: str) -> subprocess.CompletedProcess:
    """``args`` (a program of the venv and its arguments) run in another folder than the checkout."""
    cmd = [str(wheel_venv["bin"] / args[0]), *args[1:]]
    return subprocess.run(
        cmd, cwd=wheel_venv["cwd"], env=outside_env(), capture_output=True, text=True, timeout=600
    )


def test_the_build_gives_a_wheel_and_an_sdist_of_the_version(wheel_venv):
    names = sorted(p.name for p in wheel_venv["dist"].iterdir())
    version = streamsnn.__version__
    assert names == [f"streamsnn-{version}-py3-none-any.whl", f"streamsnn-{version}.tar.gz"]
    done = in_venv(
        wheel_venv, "python", "-c", "import streamsnn; print(streamsnn.__file__, streamsnn.__version__)"
    )
    where, installed = done.stdout.split()
    assert Path(where).is_relative_to(wheel_venv["bin"].parent) and installed == version


def test_the_installed_wheel_lists_every_sensor_profile(wheel_venv):
    done = in_venv(wheel_venv, "streamsnn", "sensors")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip()}
    assert listed == {p.stem for p in (ROOT / "streamsnn" / "sensors").glob("*.yaml")}


def test_the_installed_wheel_carries_the_dashboard_page(wheel_venv):
    code = (
        "import importlib.resources as r; "
        "print(*sorted(p.name for p in r.files('streamsnn.dashboard').joinpath('static').iterdir()))"
    )
    done = in_venv(wheel_venv, "python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == sorted(
        p.name for p in (ROOT / "streamsnn" / "dashboard" / "static").iterdir()
    )


def test_the_installed_wheel_runs_the_default_pipeline(wheel_venv):
    args = ["--set", "source.limit=3", "--output", "preds.jsonl", "--report", "report.json", "--no-progress"]
    done = in_venv(wheel_venv, "streamsnn", "run", "builtin:digits_dvs", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in (wheel_venv["cwd"] / "preds.jsonl").read_text().splitlines()]
    finals = [x for x in lines if x["final"]]
    assert len(finals) == 3 and len({x["sample"] for x in finals}) == 3
    assert (wheel_venv["cwd"] / "report.json").is_file()
