"""A compiled decoding step (`serve --compile_decoding`) gives the tokens the eager step gives, alone and in batches,
and warm-up compiles its graphs before the first request."""

import threading

import torch

from textsvc.config.sampling import SamplingConfig
from textsvc.loading import load_generator
from textsvc.serving.compute import in_passing_thread
from textsvc.serving.generator_batching import GenerationWorker


def decode_together(worker: GenerationWorker, prompts: list[str], config: SamplingConfig) -> list[str]:
    texts = [""] * len(prompts)

    def run(index: int) -> None:
        texts[index] = "".join(event.text for event in worker.submit(prompts[index], config))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return texts


def test_compiled_decoding_matches_eager_decoding(models_dir):
    loaded = in_passing_thread(load_generator, models_dir / "tiny-gpt", "cpu")
    eager = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16)
    compiled = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16,
                                compile_decoding=True)
    assert compiled.compiled and not eager.compiled
    compiled.warm_up()
    counters = torch._dynamo.utils.counters
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2  # batches of one, and of more (dynamic in the batch size)
    prompts = ["the cat", "my friend sees the dog", "a", "the moon is bright"]
    greedy = SamplingConfig(max_new_tokens=12, temperature=0)
    assert [decode_together(compiled, [prompt], greedy)[0] for prompt in prompts] == \
        [decode_together(eager, [prompt], greedy)[0] for prompt in prompts]
    sampled = SamplingConfig(max_new_tokens=12, temperature=0.9, seed=3)
    assert decode_together(compiled, prompts, sampled) == decode_together(eager, prompts, sampled)
    assert counters["stats"]["unique_graphs"] == graphs  # warm-up compiled every graph these batches needed
    eager.close()
    compiled.close()


def test_quantized_batches_above_the_kernel_row_limit_run_compiled_without_new_graphs(models_dir):
    from textsvc.quantization import packed_rows_of

    loaded = in_passing_thread(load_generator, models_dir / "tiny-gpt", "cpu", "float32", "int8", True)
    size = packed_rows_of(loaded.model) + 2  # above the packed kernels' limit: the W8A8 (or dequantized) branch
    compiled = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=size, max_queue_size=size,
                                compile_decoding=True)
    plain = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=size, max_queue_size=size)
    compiled.warm_up()  # batches of 1, 2 and one above the limit
    counters = torch._dynamo.utils.counters
    graphs = counters["stats"]["unique_graphs"]
    prompts = ["the cat", "my friend sees the dog", "a", "the moon is bright", "dogs run", "the sun"] * 4
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    for count in (3, size):
        assert decode_together(compiled, prompts[:count], greedy) == decode_together(plain, prompts[:count], greedy)
    assert counters["stats"]["unique_graphs"] == graphs
    compiled.close()
    plain.close()


def test_a_compiled_batch_that_fills_every_seat_matches_eager_decoding(models_dir):
    """Reading keys[:B] from seats of size B proves B equal to the seat count, which a dimension marked dynamic must
    not (torch raised a ConstraintViolationError at 2 of 2 seats, failing every request of the batch)."""
    loaded = in_passing_thread(load_generator, models_dir / "tiny-gpt", "cpu")
    compiled = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=2, max_queue_size=16,
                                compile_decoding=True)
    eager = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=2, max_queue_size=16)
    compiled.warm_up()
    prompts = ["the cat", "my friend sees the dog"]
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    assert decode_together(compiled, prompts, greedy) == decode_together(eager, prompts, greedy)
    compiled.close()
    eager.close()


def test_warm_up_batches_are_not_refused_by_a_small_queue(models_dir):
    """The warm-up seats batches of 2 and above at once; a queue bound of 1 is the clients' (warm_up raised overloaded)."""
    loaded = in_passing_thread(load_generator, models_dir / "tiny-gpt", "cpu")
    compiled = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=2, max_queue_size=1,
                                compile_decoding=True)
    compiled.warm_up()
    events = list(compiled.submit("the cat", SamplingConfig(max_new_tokens=4, temperature=0)))
    assert 1 <= len(events) <= 4 and events[-1].last
    compiled.close()
