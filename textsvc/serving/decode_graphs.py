"""A transformer's decoding steps replayed as CUDA graphs, one graph per batch size bucket.

On a GPU, a decoding step of a small model waits on the host: every kernel (SmolLM2-135M launches hundreds a step)
is launched from Python. On an H200 one step took 20 ms eager and 10 ms compiled (torch.compile's fused kernels),
at 1 row and at 64 alike, so the GPU sat idle most of the time. A graph replays a whole step in one launch. The
graphs are recorded with `torch.cuda.CUDAGraph` around the step as it is (eager, or compiled with
`--compile_decoding`), as vLLM does, rather than by inductor's graph trees: with those, SmolLM2's warm-up had not
finished after 110 s there.

A graph holds fixed shapes and addresses. So a batch runs in the graph of the smallest bucket that holds it (powers
of two up to the seat count), its extra rows padded onto free seats, where they attend to index 0 alone and change
nothing of the real rows. The graphs read the seats (`SlotRows`) in place and attend over their whole capacity;
when the seats grow (every 256 positions), the graphs are recorded again for the new ones. Warm-up records every
bucket, so clients meet no recording until a sequence outgrows the seats warm-up left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from textsvc.serving.batch_state import SlotRows


def batch_buckets(max_batch_size: int) -> list[int]:
    """The batch sizes graphs are recorded for: powers of two below `max_batch_size`, and itself."""
    sizes = [1 << power for power in range(max_batch_size.bit_length()) if 1 << power < max_batch_size]
    return [*sizes, max_batch_size]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # (3, bucket) tokens, starts and next indices, written before each replay
    logits: torch.Tensor  # (bucket, V) in the model's dtype, written by each replay


class DecodeGraphs:
    """Steps of one model's `SlotRows` replayed as CUDA graphs (see the module's docstring)."""

    def __init__(self, model: PreTrainedModel, max_batch_size: int, compiled: bool = False):
        self.model, self.buckets, self.compiled = model, batch_buckets(max_batch_size), compiled
        self._graphs: dict[int, _Graph] = {}
        self._storage: tuple[int, int] | None = None  # the seats the graphs were recorded on

    @property
    def recorded(self) -> list[int]:
        """The buckets that have a graph for the current seats."""
        return sorted(self._graphs)

    def step(self, rows: SlotRows, tokens: list[int]) -> torch.Tensor:
        """What `rows.step(model, tokens, whole_capacity=True)` gives: (B, V) float32 logits, one token per row."""
        rows.make_room()
        if rows.storage != self._storage:  # new or grown seats: the old graphs read memory that is gone
            self._graphs.clear()
            self._storage = rows.storage
        inputs = padded_inputs(rows, tokens, next(size for size in self.buckets if size >= len(tokens)))
        graph = self._graphs.get(inputs.shape[1])
        if graph is None:
            graph = self._graphs[inputs.shape[1]] = self._record(rows, inputs.to(rows.keys[0].device))
        else:
            graph.inputs.copy_(inputs)
        graph.graph.replay()
        rows.advance()
        return graph.logits[:len(tokens)].float()

    def _record(self, rows: SlotRows, inputs: torch.Tensor) -> _Graph:
        """Record the step on these inputs. Running it first on a side stream (what CUDA graphs need before they
        record) writes each real row's new key and value where the replay writes them again, so it is harmless."""
        dynamic = self.compiled and inputs.shape[1] > 1  # a compiled model: one graph for all buckets above 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # where a compiled model compiles, before recording
            rows.forward(self.model, *inputs, rows.capacity, dynamic)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (classifiers on the same GPU, say) may launch work while this one records
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            logits = rows.forward(self.model, *inputs, rows.capacity, dynamic)
        return _Graph(graph, inputs, logits)


def padded_inputs(rows: SlotRows, tokens: list[int], size: int) -> torch.Tensor:
    """(3, size) on the host: each row's token, start and next index, then rows of zeros up to `size` (padding rows
    on free seats, which write and read their seat's index 0 alone)."""
    padding = [0] * (size - len(tokens))
    return torch.tensor([tokens + padding, rows.start + padding, rows.next + padding])
