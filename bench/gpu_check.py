"""GPU check: ``kiln serve`` a tiny PyTorch model on a machine with NVIDIA GPUs; report each worker's device.

What it shows: the runtime finds the GPUs it was given, starts one worker per GPU by default
(``KILN_ACCELERATOR=cuda``, as a CUDA image sets it), pins each worker to its own GPU with
``CUDA_VISIBLE_DEVICES``, and the model loaded on ``cuda`` in each worker really runs there.

    python bench/gpu_check.py                    # workers: one per GPU (the CUDA default)
    python bench/gpu_check.py --workers 4        # more workers than GPUs: round-robin

Needs, on the GPU machine: the NVIDIA driver (``nvidia-smi``), a Python with a CUDA build of
``torch``, ``mlflow`` (or ``mlflow-skinny``), and kiln's runtime packages (``pip install -e .`` of
this checkout does it). It prints what is missing instead of failing obscurely, writes a JSON
report to ``--output`` and exits 0 only when every worker ran the model on its own GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_CODE = '''
import os

import mlflow.pyfunc
import pandas as pd
import torch


class DeviceProbe(mlflow.pyfunc.PythonModel):
    """A one-layer network on the GPU its worker was given; each answer says where it ran."""

    def load_context(self, context):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1).to(self.device)

    def predict(self, context, model_input, params=None):
        x = torch.tensor(model_input.to_numpy(), dtype=torch.float32, device=self.device)
        y = self.net(x).detach().cpu().numpy().ravel()
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index) if self.device.type == "cuda" else "cpu"
        uuid = str(torch.cuda.get_device_properties(index).uuid) if self.device.type == "cuda" else ""
        return pd.DataFrame({
            "y": y,
            "pid": os.getpid(),
            "device": str(self.device),
            "gpu_name": name,
            "gpu_uuid": uuid,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        })
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, help="worker count (default: the runtime's, one per GPU)")
    parser.add_argument("--requests", type=int, default=200, help="requests to send (spread over workers)")
    parser.add_argument("--output", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    args = parser.parse_args(argv)
    missing = _missing()
    if missing:
        print("gpu_check: cannot run here:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    gpus = _nvidia_smi()
    print(f"gpu_check: {len(gpus)} GPU(s): " + "; ".join(gpus))
    with tempfile.TemporaryDirectory(prefix="kiln-gpu-check-") as tmp:
        model = _save_model(Path(tmp))
        answers, log = _serve_and_ask(model, Path(tmp), args.workers, args.requests)
    report = _report(gpus, answers, args.workers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({**report, "log_tail": log[-4000:]}, indent=2) + "\n")
    for worker in report["workers"]:
        print(
            f"  worker pid {worker['pid']}: {worker['device']} ({worker['gpu_name']}, {worker['gpu_uuid']}), "
            f"CUDA_VISIBLE_DEVICES={worker['cuda_visible_devices']!r}, {worker['answers']} answers"
        )
    print(f"gpu_check: {'OK' if report['ok'] else 'FAILED'}: {report['verdict']} (report: {args.output})")
    return 0 if report["ok"] else 1


def _missing() -> list[str]:
    problems = []
    if shutil.which("nvidia-smi") is None:
        problems.append("no nvidia-smi on PATH (no NVIDIA driver on this machine)")
    for module in ("torch", "mlflow", "pandas", "starlette", "uvicorn", "orjson", "kiln"):
        if importlib.util.find_spec(module) is None:
            problems.append(f"Python module {module!r} is not importable by {sys.executable}")
    if not problems:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"torch {torch.__version__} sees no CUDA device (a CPU build, or no driver)")
    return problems


def _nvidia_smi() -> list[str]:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True, timeout=60)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _save_model(tmp: Path) -> Path:
    import mlflow.pyfunc
    import pandas as pd

    code = tmp / "device_probe.py"
    code.write_text(textwrap.dedent(MODEL_CODE))
    sys.path.insert(0, str(tmp))
    from device_probe import DeviceProbe  # type: ignore[import-not-found]

    path = tmp / "model"
    example = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0]})
    mlflow.pyfunc.save_model(path, python_model=DeviceProbe(), code_paths=[str(code)], input_example=example)
    return path


def _serve_and_ask(
    model: Path, tmp: Path, workers: int | None, requests: int
) -> tuple[list[dict[str, object]], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "KILN_ACCELERATOR": "cuda"}
    command = [sys.executable, "-m", "kiln", "serve", "-m", str(model), "--port", str(port)]
    if shutil.which("nginx") is None:
        command.append("--no-nginx")
    if workers:
        command += ["--workers", str(workers)]
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            _wait_ready(port, server)
            body = json.dumps(
                {"dataframe_split": {"columns": list("abcd"), "data": [[1.0, 2.0, 3.0, 4.0]]}}
            ).encode()
            with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent, so every worker gets some
                answers = list(pool.map(lambda _: _post(port, body), range(requests)))
        finally:
            server.terminate()
            server.wait(timeout=60)
    return answers, log_path.read_text(errors="replace")


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gpu_check: kiln serve exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("gpu_check: kiln serve was not ready within 300 s")


def _post(port: int, body: bytes) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        (row,) = json.loads(answer.read())["predictions"]
        return dict(row)


def _report(gpus: list[str], answers: list[dict[str, object]], workers: int | None) -> dict[str, object]:
    by_pid: dict[object, dict[str, object]] = {}
    for row in answers:
        seen = by_pid.setdefault(row["pid"], {**{k: row[k] for k in row if k != "y"}, "answers": 0})
        seen["answers"] = int(seen["answers"]) + 1  # type: ignore[call-overload]
    rows = sorted(by_pid.values(), key=lambda w: str(w["cuda_visible_devices"]))
    expected = workers or len(gpus)
    on_gpu = all(str(w["device"]).startswith("cuda") for w in rows)
    distinct = len({w["gpu_uuid"] for w in rows}) == min(len(rows), len(gpus))
    ok = on_gpu and distinct and len(rows) == expected
    verdict = (
        f"{len(rows)} workers answered (expected {expected}); "
        f"{'all on a GPU' if on_gpu else 'some on the CPU'}; "
        f"{'each on its own GPU' if distinct else 'GPUs shared although enough were free'}"
    )
    return {"gpus": gpus, "workers": rows, "ok": ok, "verdict": verdict}


if __name__ == "__main__":
    sys.exit(main())
