"""A `textsvc serve` process for the serving scripts (benchmarks, fuzzing, overload, soak): start it on a free port,
wait for /ready, read its memory; and a folder of tiny models trained on the spot, for runs that need no real ones."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_MODELS = Path.home() / ".cache" / "textsvc" / "models"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    """Until /ready answers 200; out at once when the server exits, or when it has loaded and is not ready
    (`load_failed`: no models found, or the ones needed failed), which no wait would change."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read() or b"{}")
            except ValueError:  # not textsvc's JSON: keep waiting
                body = {}
            if body.get("status") == "load_failed":
                process.terminate()
                raise SystemExit(f"the server loaded and is not ready: {body['error']['message']}") from None
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout_s} s")


def memory_mib(pid: int) -> dict:
    """Resident and peak resident memory of a process, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    if "VmRSS" not in fields:
        raise SystemExit(f"process {pid} has exited")  # a zombie keeps its status file, without memory lines
    return {key: int(fields[name].split()[0]) / 1024 for key, name in (("rss_mib", "VmRSS"), ("peak_rss_mib", "VmHWM"))}


def gpu_memory_mib(pid: int) -> float | None:
    """GPU memory a process holds (its CUDA context and its allocator's pool), as nvidia-smi reports it; None
    without nvidia-smi, or where it lists no memory for the process (as inside some sandboxes)."""
    if shutil.which("nvidia-smi") is None:
        return None
    listing = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=False).stdout
    used = [float(fields[1]) for line in listing.splitlines()
            if len(fields := [field.strip() for field in line.split(",")]) == 2 and fields[0] == str(pid)]
    return sum(used) if used else None


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used, its threads included, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cores_elsewhere(exclude_pids: list[int], sample_s: float = 1.0) -> float:
    """How many cores processes other than `exclude_pids` kept busy over `sample_s` seconds (Linux): a benchmark's
    figures mean little beside another busy process (README, "Sharing the CPU")."""
    def busy_and_ours() -> tuple[float, float]:
        values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        busy = (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest time is inside user
        return busy, sum(cpu_seconds(pid) for pid in exclude_pids)

    busy_before, ours_before = busy_and_ours()
    time.sleep(sample_s)
    busy_after, ours_after = busy_and_ours()
    return max(0.0, (busy_after - busy_before) - (ours_after - ours_before)) / sample_s


def start_textsvc(models_dir: str | Path, flags: list[str] = (), env: dict | None = None
                  ) -> tuple[str, subprocess.Popen]:
    """`textsvc serve` on `models_dir` and a free port, with `flags` (and `env` over this process's environment);
    its base URL and process once /ready is 200."""
    port = free_port()
    command = [sys.executable, "-m", "textsvc.cli", "serve", "--models_dir", str(models_dir), "--port", str(port),
               *flags]
    log = open(Path(tempfile.gettempdir()) / f"textsvc-serve-{port}.log", "wb")  # its access log: a pipe would fill
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/ready", process)
    return base, process


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then wait for the drain (the server's own graceful shutdown)."""
    process.terminate()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()


WORDS = {"pos": "good great excellent lovely superb".split(), "neg": "bad awful poor dreadful boring".split()}
FILLER = "the film plot acting was really quite a story café 日本".split()  # multi-byte characters too


def train_tiny_models(root: Path, gpt_hidden_size: int = 32, gpt_block_size: int = 32) -> Path:
    """`root` with a tiny LSTM classifier (`tiny-classifier`) and a tiny GPT (`tiny-gpt`, 2 layers of
    `gpt_hidden_size`, a context of `gpt_block_size`), trained in seconds on sentences written here, through
    `textsvc train-classifier` / `train-generator`."""
    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(120):
        label = ("pos", "neg")[i % 2]
        rows.append(" ".join(rng.sample(FILLER, 3) + rng.sample(WORDS[label], 2)) + f",{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "corpus.txt").write_text("\n".join(" ".join(rng.sample(FILLER, 6)) + "." for _ in range(400)) + "\n",
                                     encoding="utf-8")
    models = root / "models"
    cli = [sys.executable, "-m", "textsvc.cli"]
    _quietly([*cli, "train-classifier", "--train_file", str(root / "train.csv"), "--arch", "lstm",
              "--embedding_init", "scratch", "--vocab_size", "200", "--embedding_dim", "16", "--hidden_size", "16",
              "--num_layers", "2", "--max_seq_length", "32",
              "--num_train_epochs", "3", "--disable_tqdm", "--output_dir", str(models / "tiny-classifier")])
    _quietly([*cli, "train-generator", "--train_file", str(root / "corpus.txt"), "--arch", "transformer",
              "--vocab_size", "300", "--hidden_size", str(gpt_hidden_size), "--num_layers", "2",
              "--num_attention_heads", "2", "--block_size", str(gpt_block_size), "--max_steps", "20",
              "--disable_tqdm", "--output_dir", str(models / "tiny-gpt")])
    return models


def _quietly(command: list[str]) -> None:
    """Run `command`; its output only if it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
