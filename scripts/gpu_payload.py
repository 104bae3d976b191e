"""What scripts/gpu_check.sh needs on a GPU machine that reaches neither the hub nor PyPI, packed into `.gpu/`
(ignored by git) under the 64 MiB that the device tool carries, and unpacked there.

    python scripts/gpu_payload.py pack                     here, beside ../shared and an installed .venv
    python3 scripts/gpu_payload.py unpack --dest DIR       there (scripts/gpu_check.sh does it)

pack: the wheels that the GPU image lacks or holds too old; all-MiniLM-L6-v2's weights in float16, xz-compressed
(41 MB; float32 would be 91); SmolLM2-135M's config and tokenizer, without its weights (its GGUF alone is 98 MB);
SST-2 and the AG News sample.
unpack: MiniLM back in float32 (float16 rounding moves each weight by under 5e-4 of itself), and a generator of
SmolLM2-135M's architecture and size with seeded random weights: it decodes at the same speed as SmolLM2 (the same
shapes and kernels), but its text means nothing, so it serves for speed figures only.
"""

from __future__ import annotations

import argparse
import lzma
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the image's python3 is 3.12 and holds torch, tokenizers, huggingface_hub 1.x (2.x would need httpx2, which it
# lacks), accelerate, onnx(runtime), pandas, pyarrow and matplotlib
WHEELS = ("transformers", "datasets", "flask", "waitress", "blinker", "itsdangerous", "werkzeug",
          "gguf", "dill", "multiprocess", "prometheus-client")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "any")
DATA_FILES = ("sst2/train.tsv", "sst2/dev.tsv", "ag_news/train_sample.tsv")
GENERATOR_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "chat_template.jinja", "import_info.json")
MINILM_WEIGHTS = "model.fp16.safetensors.xz"


def pinned(names: tuple[str, ...]) -> list[str]:
    """`name==version` of each name, as requirements.lock pins it (the versions the suite passes with)."""
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return [re.search(rf"^({re.escape(name)}==\S+)", lock, re.MULTILINE | re.IGNORECASE).group(1) for name in names]


def pack(payload: Path, shared_data: Path, with_encoder: bool = True) -> None:
    from safetensors.torch import load_file, save

    from textsvc.gguf_import import default_gguf_file
    from textsvc.pretrained import default_encoder_path

    shutil.rmtree(payload, ignore_errors=True)
    (payload / "whl").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp",
                    *[part for platform in PLATFORMS for part in ("--platform", platform)],
                    "-d", str(payload / "whl"), *pinned(WHEELS)], check=True)
    minilm = Path(default_encoder_path())
    staging = payload / "staging"
    shutil.copytree(minilm, staging / "minilm", ignore=shutil.ignore_patterns("*.safetensors", "onnx"))
    if with_encoder:
        weights = {name: tensor.half() if tensor.is_floating_point() else tensor
                   for name, tensor in load_file(minilm / "model.safetensors").items()}
        (payload / MINILM_WEIGHTS).write_bytes(lzma.compress(save(weights), preset=6))
    generator = staging / "smollm2-135m"
    subprocess.run([sys.executable, "-m", "textsvc.cli", "import-gguf", "--gguf_file", str(default_gguf_file()),
                    "--output_dir", str(generator)], check=True)
    (generator / "model.safetensors").unlink()
    for name in DATA_FILES:
        (staging / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / name, staging / "data" / name)
    with tarfile.open(payload / "files.tar.xz", "w:xz") as archive:
        for folder in ("minilm", "smollm2-135m", "data"):
            archive.add(staging / folder, arcname=folder)
    shutil.rmtree(staging)
    size = sum(path.stat().st_size for path in payload.rglob("*") if path.is_file())
    print(f"{payload}: {size / 2**20:.1f} MiB (the device tool carries 64 MiB with the working tree)")


def unpack(payload: Path, dest: Path) -> None:
    import torch
    from safetensors.torch import load, save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    with tarfile.open(payload / "files.tar.xz") as archive:
        archive.extractall(dest, filter="data")
    if (payload / MINILM_WEIGHTS).is_file():  # left out of a payload for generation alone (pack --no_encoder)
        weights = load(lzma.decompress((payload / MINILM_WEIGHTS).read_bytes()))
        save_file({name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in weights.items()},
                  dest / "minilm" / "model.safetensors", metadata={"format": "pt"})
    generator = dest / "smollm2-135m"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(generator))
    model.save_pretrained(generator)
    (generator / "README.md").write_text("# SmolLM2-135M's architecture with random weights\n\nMade by "
                                         "scripts/gpu_payload.py for speed figures only: its text means nothing.\n",
                                         encoding="utf-8")
    encoder = "minilm (float32), " if (payload / MINILM_WEIGHTS).is_file() else ""
    print(f"unpacked into {dest}: {encoder}smollm2-135m ({model.num_parameters() / 1e6:.0f}M parameters, "
          "random weights), data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("--payload", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--shared_data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--dest", type=Path, default=Path("/tmp/textsvc-gpu"))
    parser.add_argument("--no_encoder", action="store_true", help="pack: leave MiniLM's weights out (41 MB), for "
                        "generation figures alone (scripts/profile_streams.py)")
    args = parser.parse_args()
    if args.action == "pack":
        pack(args.payload, args.shared_data, with_encoder=not args.no_encoder)
    else:
        args.dest.mkdir(parents=True, exist_ok=True)
        unpack(args.payload, args.dest)


if __name__ == "__main__":
    main()
