"""The GPU paths: bf16 loading, batched decoding equal to solo decoding, CUDA-graph decoding equal to eager
decoding, and the classifier batcher on CUDA.

Skipped where no GPU is visible (this suite's CPU runs and CI); `scripts/gpu_check.sh` runs them on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.generation.loop import generate
from textsvc.loading import classify_logits, load_classifier, load_generator
from textsvc.serving.engine import Engine
from textsvc.serving.generator_batching import GenerationWorker

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_dtype_loads_bf16_on_a_gpu_that_has_it(transformer_dir):
    classifier = load_classifier(transformer_dir, "cuda", "auto")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert classifier.model.dtype == expected and classifier.device.type == "cuda"


@pytest.mark.parametrize("name", ["tiny-lstm-lm", "tiny-gpt"])
def test_batched_decoding_on_the_gpu_equals_solo_decoding(models_dir, name):
    loaded = load_generator(models_dir / name, "cuda")
    worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16)
    prompts = ["the cat", "my friend sees the dog", "", "a", "the moon is bright"]
    configs = [SamplingConfig(max_new_tokens=8, temperature=0 if i % 2 else 0.9, seed=i) for i in range(5)]
    jobs = [worker.submit(prompt, config) for prompt, config in zip(prompts, configs)]
    texts = ["".join(event.text for event in job) for job in jobs]
    worker.close()
    for prompt, config, text in zip(prompts, configs, texts):
        assert text == generate(loaded.model, loaded.tokenizer, prompt, config).text


@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_graph_decoding_on_the_gpu_equals_eager_decoding(models_dir, compiled):
    loaded = load_generator(models_dir / "tiny-gpt", "cuda")
    eager = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16)
    graphed = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16,
                               compile_decoding=compiled, cuda_graphs=True)
    graphed.warm_up()
    assert graphed.graphs is not None and graphed.graphs.recorded == [1, 2, 4]  # every bucket, before any request
    storage = graphed._rows.storage
    prompts = ["the cat", "my friend sees the dog", "", "a", "the moon is bright"]  # 5 rows: 4, then the fifth alone
    configs = [SamplingConfig(max_new_tokens=12, temperature=0 if i % 2 else 0.9, seed=i) for i in range(5)]
    texts = {}
    for worker in (eager, graphed, graphed):  # every prompt at once; the second pass reuses the graphs and seats
        jobs = [worker.submit(prompt, config) for prompt, config in zip(prompts, configs)]
        texts.setdefault(worker, []).append(["".join(event.text for event in job) for job in jobs])
    assert texts[graphed] == texts[eager] * 2
    assert graphed.graphs is not None and graphed.graphs.recorded == [1, 2, 4]  # recording never failed
    assert graphed._rows.storage == storage  # no seats grew, so no graph was recorded again
    eager.close()
    graphed.close()


def test_classifier_batcher_on_the_gpu_matches_direct_inference(models_dir, transformer_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cuda", dtype="float32"))
    engine.load()
    texts = ["good great excellent", "awful bad", "the film"]
    served = engine.classify("sentiment-bert", texts, top_k=None)
    direct = classify_logits(load_classifier(transformer_dir, "cuda"), texts).softmax(-1)
    labels = engine.model("sentiment-bert").loaded.label_names
    for scores, row in zip(served, direct):
        by_label = {item["label"]: item["score"] for item in scores}
        assert [by_label[label] for label in labels] == pytest.approx(row.tolist(), abs=1e-4)
    engine.close()
