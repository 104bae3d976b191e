"""Continuous batching for generators: one worker thread per model decodes every running request together, one
token per step, and seats waiting requests between steps (iteration-level scheduling, as in Orca, Yu et al. 2022).

The requests that arrive together are prefilled together (a transformer's prompts left-padded into one forward pass;
the LSTM's one by one), then their state joins the running batch (`serving.batch_state`): an LSTM's (h, c) rows are
stacked; a transformer's keys and values are copied into free seats of a preallocated cache. Token choice, stop
strings and text release are `generation.sequence.DecodingSequence`'s, so what a request gets does not depend on the
path that made it (up to floating-point differences between batch shapes). Requests wait in an `AdmissionQueue`, as
classifier texts do. Each iteration's torch work runs where `serving.compute` says: on the process's compute thread
for a CPU model.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textsvc.config.sampling import SamplingConfig, fit_to_context
from textsvc.generation.attention import use_decode_attention
from textsvc.generation.sequence import DecodingSequence, GenerationResult, next_tokens, prompt_ids
from textsvc.generation.stopping import eos_ids
from textsvc.loading import context_length
from textsvc.models.lstm import LSTMForCausalLM
from textsvc.quantization import packed_rows_of
from textsvc.serving.admission import AdmissionQueue
from textsvc.serving.batch_state import CacheRows, SlotRows, StateRows, plain_key_value_cache
from textsvc.serving.compute import runner_for
from textsvc.serving.decode_graphs import DecodeGraphs
from textsvc.serving.memory import return_freed_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, the text it releases ('' while held back), and whether it is the last."""

    id: int
    text: str
    logprob: float | None
    special: bool
    last: bool = False


class Job:
    """One request's seat: iterate for its token events; `result` is set before the last one arrives.

    The iteration ends early, with `result` still None, when the job is cancelled (the client went away).
    """

    def __init__(self, ids: list[int], config: SamplingConfig, should_stop: Callable[[], bool]):
        self.ids, self.config, self.should_stop = ids, config, should_stop
        self.result: GenerationResult | None = None
        self.submitted = time.perf_counter()
        self.started: float | None = None  # when the worker seated it: the queue time ends there
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # groups of events (lists), an error, or None: the end
        self._held: list[TokenEvent] = []  # the worker's: events not yet sent (GenerationWorker's stream_interval)
        self._left_in_group = 0
        self._cancelled = False

    def __iter__(self) -> Iterator[TokenEvent]:
        while (item := self._events.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            for index, event in enumerate(item):
                self._left_in_group = len(item) - index - 1
                yield event

    def cancel(self) -> None:
        """Give the seat up; the worker drops the sequence before its next step."""
        self._cancelled = True

    def waiting(self) -> bool:
        """Whether an event (or the end) is already there for the reader: its group's next, or one queued."""
        return self._left_in_group > 0 or not self._events.empty()

    @property
    def cancelled(self) -> bool:
        return self._cancelled or self.should_stop()

    def _put(self, item: list[TokenEvent] | BaseException | None) -> None:
        self._events.put(item)


def compiled_step(model: PreTrainedModel) -> Callable[..., object]:
    """`model`'s forward compiled for decoding steps, in a function whose code object is its own.

    The guards on the model's modules' attributes (checked before every call: 1.5-1.9 ms of SmolLM2's ~22 ms step on
    2 cores, and again 2 ms when only the structural ones were kept) are dropped, and dynamo keeps compiled code per
    code object, not per model: compiled straight from `model.forward`, a second model of the same class in the
    process ran the first one's graph (an int8 graph on a float32 model: KeyError 'weight_int8'). A code object per
    worker keeps each model's graphs its own, as long as the step compiles without graph breaks (whose resumed
    frames are the model's own code again)."""
    def step(**inputs):
        return model(**inputs)

    own = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                             step.__closure__)
    return torch.compile(own, dynamic=None, options={
        "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})


class GenerationWorker:
    """Owns one generator: requests queue up (`submit`), its thread decodes up to `max_batch_size` of them at once.

    Models whose cache is not a plain dynamic key/value cache (sliding windows, say) run one request at a time.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, max_batch_size: int,
                 max_queue_size: int, retry_after_s: int = 1, name: str = "generator", compile_decoding: bool = False,
                 cuda_graphs: bool = False, stream_interval: int = 1,
                 on_batch: Callable[[int], None] = lambda size: None,
                 on_depth: Callable[[int], None] = lambda depth: None,
                 on_first_token: Callable[[float], None] = lambda seconds: None,
                 on_tokens: Callable[[int], None] = lambda count: None):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.limit, self.ends = context_length(model), eos_ids(model, tokenizer)
        self.special = self.ends | set(tokenizer.all_special_ids)
        self.run = runner_for(model.device)  # where the torch work runs (serving.compute)
        self.stream_interval = stream_interval
        self._running: list[tuple[Job, DecodingSequence]] = []  # the worker's own: the seats taken, and their rows
        self._rows: StateRows | SlotRows | CacheRows | None = None
        self.on_batch, self.on_first_token, self.on_tokens = on_batch, on_first_token, on_tokens
        self.max_batch_size = max_batch_size if self.run(self._batchable) else 1
        # a prefill needs the logits of the prompts' last position alone: the vocabulary projection of the others
        # (a (B, T, V) product) is skipped where the model's forward takes `logits_to_keep`
        takes = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if takes else {}
        # torch.compile fuses a step's hundreds of small ops (norms, rotary positions, residuals), which is what a
        # step of one or a few rows spends its time on. Every batch size runs compiled: in one graph for batches of
        # one, one dynamic in the batch size up to the quantized kernels' row limit and one above it (their branch
        # differs), plus one each time the seats grow; prefills and the LSTM stay eager. SmolLM2 int4 on the 2-core
        # CPU, in-process, a step of 1 row: 12.7-13.6 ms compiled, 25-28 eager; 8 rows: 36-40 against 54-75; 16
        # rows: 45-53 against 55-59. (Before `decode_attention`, the compiled step lost above the row limit.)
        self.compiled = compile_decoding and self.max_batch_size > 1 and not isinstance(model, LSTMForCausalLM)
        # On a GPU, `cuda_graphs` replays each step as a CUDA graph (serving.decode_graphs), of the compiled step
        # where it is compiled, of the eager one otherwise; it changes nothing on the CPU.
        graphs = cuda_graphs and model.device.type == "cuda" and self.max_batch_size > 1 and not isinstance(
            model, LSTMForCausalLM)
        if self.compiled or graphs:
            use_decode_attention(model)
        # the worker's model never changes once compiled, so the guards on its modules are dropped (`compiled_step`);
        # the inputs' guards stay, and still pick the graph for the batch size and the seats' capacity. Guards on
        # transformers' registry of output-recording model classes stay too: a class that first runs after warm-up
        # compiles the step again (so the engine warms its classifiers up before its generators).
        self._decode = compiled_step(model) if self.compiled else model
        self.graphs = DecodeGraphs(self._decode, self.max_batch_size, self.compiled) if graphs else None
        self.queue: AdmissionQueue[Job] = AdmissionQueue(max_queue_size, name=name, retry_after_s=retry_after_s,
                                                         on_depth=on_depth)
        self._thread = threading.Thread(target=self._run, name=f"textsvc-{name}", daemon=True)
        self._thread.start()

    def submit(self, prompt: str, config: SamplingConfig, should_stop: Callable[[], bool] = lambda: False,
               truncate: int | None = None, shrink_to_fit: bool = False) -> Job:
        """Queue a generation (tokenized here, in the caller's thread).

        `truncate` keeps the prompt's last tokens; `shrink_to_fit` lowers a default `max_new_tokens` to the room the
        context has left (TGI does the same). Otherwise `input_too_long` when prompt and new tokens exceed the
        model's context, and `overloaded` when the queue is full.
        """
        ids = prompt_ids(self.tokenizer, prompt, None)
        if truncate is not None:
            ids = ids[-truncate:]
        config = fit_to_context(config, len(ids), self.limit, shrink_to_fit)
        job = Job(ids, config, should_stop)
        self.queue.put_all([job])
        return job

    def warm_up(self) -> None:
        """Decode a few tokens alone, and, when the step is compiled, in batches of two and of one row above the
        quantized kernels' row limit, or with CUDA graphs, in a batch of each bucket's size: each compiles or
        records its graph (see __init__), which no client should wait for."""
        start = prompt_ids(self.tokenizer, "", None)
        sizes = [1]
        if self.graphs:
            sizes = self.graphs.buckets
        elif self.compiled:
            sizes = sorted({1, 2, min(packed_rows_of(self.model) + 1, self.max_batch_size)})
        for size in sizes:
            jobs = [Job(start, SamplingConfig(max_new_tokens=3, temperature=0), lambda: False) for _ in range(size)]
            # at once, so that they are seated together; a batch of 17 (the row limit of CPUs without bf16
            # instructions, plus one) is above a small --max_queue_size, which bounds clients, not the warm-up
            self.queue.put_all(jobs, bounded=False)
            for job in jobs:
                for _ in job:
                    pass

    def close(self) -> None:
        """Stop taking requests, finish the running and waiting ones, and end the thread."""
        self.queue.close()
        self._thread.join(timeout=30)

    @torch.inference_mode()
    def _batchable(self) -> bool:
        if isinstance(self.model, LSTMForCausalLM):
            return True
        start = prompt_ids(self.tokenizer, "", None)
        cache = self.model(input_ids=torch.tensor([start], device=self.model.device), use_cache=True).cache
        return plain_key_value_cache(cache)

    def _run(self) -> None:
        with torch.inference_mode():
            # waiting jobs take the free seats between steps; block only while nothing runs
            while (jobs := self.queue.take(self.max_batch_size - len(self._running),
                                           block=not self._running)) is not None:
                for job in jobs:
                    job.started = time.perf_counter()
                    if job.cancelled:
                        job._put(None)  # its client went away while it waited
                self.run(self._advance, [job for job in jobs if not job.cancelled])

    def _advance(self, newcomers: list[Job]) -> None:
        """Seat the newcomers, decode one token for every running sequence, and drop the finished and cancelled."""
        seated = self._seat(newcomers)
        if seated is not None:
            self._running += seated[0]
            self._rows = self._join(seated[1])
        running = self._running
        if not running:
            return
        try:
            tokens = [sequence.history[-1] for _, sequence in running]
            self.on_batch(len(running))
            logits = self._step(tokens)
            self._pick_and_send(running, logits)
        except Exception as error:  # every request of this batch fails; the worker lives on
            log.exception("a decoding step failed on %s", self.name)
            for job, _ in running:
                job._put(error)
            self._running, self._rows = [], None
            return
        keep = [index for index, (job, sequence) in enumerate(running) if not sequence.done and not job.cancelled]
        if len(keep) < len(running):
            for index, (job, sequence) in enumerate(running):
                if index not in keep and not sequence.done:
                    job._put(None)  # cancelled: the stream ends without a result
            self._running = [running[index] for index in keep]
            if self._running:
                self._rows.select(keep)
            elif self.graphs:
                self._rows.clear()  # the seats stay where the graphs read them, for the next batch
            else:
                self._rows = None  # the batch is over: its seats go back to the system
                return_freed_memory()

    def _step(self, tokens: list[int]) -> torch.Tensor:
        """(B, V) logits of one token per running row: replayed as a CUDA graph where graphs are on (the seats are
        then always `SlotRows`), else compiled or eager. Where recording fails, the step runs without graphs from
        then on (said in the log)."""
        if self.graphs:
            try:
                return self.graphs.step(self._rows, tokens)
            except Exception:  # a model whose step cannot be recorded still serves, at the ungraphed speed
                log.exception("%s: recording a CUDA graph of the decoding step failed; decoding without graphs "
                              "from now on", self.name)
                self.graphs = None
        if isinstance(self._rows, SlotRows) and self.compiled:
            return self._rows.step(self._decode, tokens, whole_capacity=True)
        return self._rows.step(self.model, tokens)

    def _seat(self, jobs: list[Job]) -> tuple[list[tuple[Job, DecodingSequence]], StateRows | CacheRows] | None:
        """Prefill the newcomers together and emit their first tokens; the ones still running, and their rows."""
        if not jobs:
            return None
        try:
            sequences, logits, rows = self._prefill(jobs)
            self._pick_and_send(list(zip(jobs, sequences)), logits)
        except Exception as error:  # these requests fail; the running ones go on
            log.exception("prefill failed on %s", self.name)
            for job in jobs:
                job._put(error)
            return None
        keep = [index for index, sequence in enumerate(sequences) if not sequence.done]
        if not keep:
            return None
        if len(keep) < len(jobs):
            rows.select(keep)
        return [(jobs[index], sequences[index]) for index in keep], rows

    def _join(self, rows: StateRows | CacheRows) -> StateRows | SlotRows | CacheRows:
        """The running batch with the newly prefilled rows in it."""
        if isinstance(rows, StateRows):
            return rows if self._rows is None else self._rows.join(rows)
        if self.max_batch_size == 1:
            return rows  # a cache of its own kind: one sequence runs at a time in it
        return (self._rows or SlotRows(self.max_batch_size)).join(rows)

    def _prefill(self, jobs: list[Job]) -> tuple[list[DecodingSequence], torch.Tensor, StateRows | CacheRows]:
        """The jobs' sequences, the (B, V) logits after their prompts, and their state as one batch.

        A transformer reads all prompts in one forward pass, left-padded to the longest (as `generate()` batches
        them), so a burst of arrivals costs one prefill rather than one each. The LSTM reads each prompt alone:
        padding would run through its recurrence.
        """
        device = self.model.device
        sequences = [DecodingSequence(self.tokenizer, job.ids, job.config, self.ends, device) for job in jobs]
        if isinstance(self.model, LSTMForCausalLM):
            outputs = [self.model(input_ids=torch.tensor([job.ids], device=device), use_cache=True) for job in jobs]
            rows = StateRows(outputs[0].cache)
            for output in outputs[1:]:
                rows.join(StateRows(output.cache))
            return sequences, torch.cat([output.logits[:, -1, :].float() for output in outputs]), rows
        longest = max(len(job.ids) for job in jobs)
        input_ids = torch.zeros(len(jobs), longest, dtype=torch.long, device=device)  # (B, T)
        mask = torch.zeros_like(input_ids)
        for index, job in enumerate(jobs):
            input_ids[index, longest - len(job.ids):] = torch.tensor(job.ids, device=device)
            mask[index, longest - len(job.ids):] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, T) real positions, 0 under the padding
        output = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            **self._last_logits_only)
        return sequences, output.logits[:, -1, :].float(), CacheRows(output.cache, mask)

    def _pick_and_send(self, running: list[tuple[Job, DecodingSequence]], logits: torch.Tensor) -> None:
        """Pick each sequence's next token from its row of `logits` and send it to its job as an event (the result
        set first when it was the last). The events go out after the whole batch is picked: each send wakes its
        stream's HTTP thread, and woken threads took the GIL from this loop (a tiny GPT at 64 streams on the 2-core
        CPU: 11-20% more tokens/s than sending each as it was picked, README, Performance)."""
        picks = next_tokens([sequence for _, sequence in running], logits)
        outbox, now = [], time.perf_counter()
        for index, (job, sequence) in enumerate(running):
            text = sequence.step(picks[index], logits[index:index + 1])
            token = sequence.token_ids[-1]
            logprob = sequence.logprobs[-1] if sequence.logprobs else None  # only when the request asked for them
            if len(sequence.token_ids) == 1:
                self.on_first_token(now - job.submitted)
            if sequence.done:
                job.result = sequence.result()
            job._held.append(TokenEvent(token, text, logprob, token in self.special, last=sequence.done))
            # the first token goes at once (time to first token), the others `stream_interval` at a time: one
            # wake-up and one write for several tokens. With 64 streams of a tiny GPT on the 2-core CPU, where the
            # HTTP threads' work a token bounds the rate (as on a GPU), groups of 4 made 5,098-6,478 tokens/s
            # against 3,925-5,013 (README, Performance).
            if sequence.done or len(sequence.token_ids) == 1 or len(job._held) >= self.stream_interval:
                outbox.append((job, job._held))
                job._held = []
            if sequence.done:
                outbox.append((job, None))
        self.on_tokens(len(running))
        for job, events in outbox:
            job._put(events)
