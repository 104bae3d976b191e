"""What the CUDA-graph decoding path (serving.decode_graphs) relies on, checked on the CPU: the bucket sizes, a step
padded to its bucket giving the real rows the logits of the unpadded step, and seats kept between batches.
tests/serving/test_cuda.py records and replays the graphs themselves on a GPU."""

import pytest
import torch
from test_batch_state import nan_filled, prefill, solo_logits, tiny_model
from test_compiled_decoding import decode_together

from textsvc.config.sampling import SamplingConfig
from textsvc.generation.attention import use_decode_attention
from textsvc.loading import load_generator
from textsvc.serving import batch_state
from textsvc.serving.batch_state import SlotRows
from textsvc.serving.compute import in_passing_thread
from textsvc.serving.decode_graphs import batch_buckets, padded_inputs
from textsvc.serving.generator_batching import GenerationWorker


@pytest.mark.parametrize("seats, buckets", [(1, [1]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]),
                                            (64, [1, 2, 4, 8, 16, 32, 64])])
def test_buckets_are_powers_of_two_up_to_the_seats(seats, buckets):
    assert batch_buckets(seats) == buckets


@pytest.mark.parametrize("kind", ["llama", "gpt2", "llama-compiled"])
@torch.inference_mode()
def test_a_step_padded_to_its_bucket_gives_the_real_rows_their_own_logits(kind, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "new_empty", nan_filled)  # free seats hold NaN, as fresh memory may
    model = tiny_model(kind.removesuffix("-compiled"))
    assert use_decode_attention(model)  # as the graphed worker sets it
    compiled = kind.endswith("-compiled")  # as recorded with --compile_decoding: dynamic in the batch size
    step = torch.compile(model, dynamic=None) if compiled else model
    histories = [[5, 6, 7], [9, 10, 11, 12, 13, 14], [3]]
    rows, logits = prefill(model, histories)
    slots = SlotRows(seats=8).join(rows)
    monkeypatch.undo()  # the seats are allocated (the free ones NaN); compiling needs the real new_empty
    for row, history in enumerate(histories):
        history.append(int(logits[row].argmax()))
    for _ in range(3):
        tokens = [history[-1] for history in histories]
        slots.make_room()
        inputs = padded_inputs(slots, tokens, 8)
        assert inputs.shape == (3, 8) and inputs[:, 3:].eq(0).all()
        padded = slots.forward(step, *inputs, slots.capacity, dynamic=compiled)  # (8, V): 3 rows, 5 of padding
        slots.advance()
        for row, history in enumerate(histories):
            torch.testing.assert_close(padded[row].float(), solo_logits(model, history), atol=1e-4, rtol=1e-4)
            history.append(int(padded[row].argmax()))


@torch.inference_mode()
def test_cleared_seats_take_a_new_batch_at_the_same_addresses(monkeypatch):
    monkeypatch.setattr(batch_state, "CAPACITY_STEP", 8)
    model = tiny_model("llama")
    rows, logits = prefill(model, [[1, 2, 3, 4]])
    slots = SlotRows(seats=2).join(rows)
    slots.step(model, [int(logits[0].argmax())])
    storage = slots.storage
    slots.clear()
    history = [7, 8]
    rows, logits = prefill(model, [history])
    slots.join(rows)
    for _ in range(3):
        history.append(int(logits[0].argmax()))
        logits = slots.step(model, [history[-1]], whole_capacity=True)
        torch.testing.assert_close(logits[0], solo_logits(model, history), atol=1e-4, rtol=1e-4)
    assert slots.storage == storage


def test_cuda_graphs_on_the_cpu_change_nothing(models_dir):
    loaded = in_passing_thread(load_generator, models_dir / "tiny-gpt", "cpu")
    eager = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16)
    asked = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16, cuda_graphs=True)
    assert asked.graphs is None and not asked.compiled
    prompts = ["the cat", "my friend sees the dog", "a", "the moon is bright"]
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    assert decode_together(asked, prompts, greedy) == decode_together(eager, prompts, greedy)
    eager.close()
    asked.close()
