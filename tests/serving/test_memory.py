"""A generator's worker hands freed heap pages back to the system when its batch ends, not during it."""

import platform

from textsvc.config.sampling import SamplingConfig
from textsvc.loading import load_generator
from textsvc.serving import generator_batching, memory
from textsvc.serving.generator_batching import GenerationWorker


def test_malloc_trim_is_found_on_glibc():
    memory.return_freed_memory()
    if platform.libc_ver()[0] == "glibc":
        assert memory._malloc_trim() is not None


def test_the_worker_trims_once_its_batch_is_over(models_dir, monkeypatch):
    trims = []
    monkeypatch.setattr(generator_batching, "return_freed_memory", lambda: trims.append(1))
    loaded = load_generator(models_dir / "tiny-gpt", "cpu")
    worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=8)
    jobs = [worker.submit(prompt, SamplingConfig(max_new_tokens=6 + 4 * i, temperature=0))
            for i, prompt in enumerate(["the cat", "a dog"])]
    for job in jobs:
        list(job)
    worker.close()
    assert 1 <= len(trims) <= 2  # once per batch that ended (the two may not have been seated together)
