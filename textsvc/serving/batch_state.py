"""The model state of a generator's running batch, one row per sequence: what a decoding step reads and extends.

- `SlotRows`: a transformer's key/value cache in preallocated seats. Each layer's keys and values are one
  (seats, heads, capacity, head_dim) tensor; a step writes one position per row in place, and a request joins by
  copying its prefilled rows into free seats and leaves by the last rows moving up. The running rows are never
  re-concatenated, as `DynamicCache` does for every layer at every step (the slots of vLLM and TGI, without pages).
- `CacheRows`: the model's own cache for one sequence, for models whose cache is not plain keys and values (sliding
  windows, say), which run one request at a time; also what a transformer's prefill hands to `SlotRows`.
- `StateRows`: an LSTM's (h, c) state.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

CAPACITY_STEP = 256  # positions the seats grow by: a reallocation every 256 tokens at most, not one per step


class StateRows:
    """The running batch of an LSTM: its (h, c) state, one row per sequence."""

    def __init__(self, state: tuple[torch.Tensor, torch.Tensor]):
        self.h, self.c = state  # (L, B, H) each

    def join(self, other: StateRows) -> StateRows:
        self.h, self.c = torch.cat([self.h, other.h], dim=1), torch.cat([self.c, other.c], dim=1)
        return self

    def select(self, keep: list[int]) -> None:
        index = torch.tensor(keep, device=self.h.device)
        self.h, self.c = self.h.index_select(1, index), self.c.index_select(1, index)

    def step(self, model: PreTrainedModel, tokens: list[int]) -> torch.Tensor:
        output = model(input_ids=torch.tensor(tokens, device=self.h.device)[:, None], cache=(self.h, self.c),
                       use_cache=True)
        self.h, self.c = output.cache
        return output.logits[:, -1, :].float()  # (B, V)


class CacheRows:
    """Sequences in the model's own cache, rows left-padded to one length: the cache, the (B, T) attention mask that
    is 0 over each row's padding, and each row's next position."""

    def __init__(self, cache: Cache, mask: torch.Tensor):
        self.cache, self.mask = cache, mask
        self.positions = mask.sum(dim=1)  # (B,)

    def select(self, keep: list[int]) -> None:
        """Keep these rows (a single sequence's cache is never cut: it only ends)."""
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions = self.mask[index], self.positions[index]

    def step(self, model: PreTrainedModel, tokens: list[int]) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        output = model(input_ids=torch.tensor(tokens, device=self.mask.device)[:, None], cache=self.cache,
                       attention_mask=self.mask, position_ids=self.positions.unsqueeze(1), use_cache=True)
        self.cache, self.positions = output.cache, self.positions + 1
        return output.logits[:, -1, :].float()  # (B, V)


class SeatCache(Cache):
    """The `Cache` a model's attention layers write to during one step of `SlotRows`: each running row's new key and
    value go to its own next index, and attention reads the rows' first `length` positions."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]):
        super().__init__(layers=[])
        self.keys, self.values = keys, values  # per layer: (seats, heads, capacity, head_dim)
        self.rows = self.write_at = None  # (B,) seat and index of each row's new token, set for each step
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.rows, :, self.write_at] = key_states[:, :, 0]  # (B, heads, head_dim)
        values[self.rows, :, self.write_at] = value_states[:, :, 0]
        batch = key_states.shape[0]
        return keys[:batch, :, :self.length], values[:batch, :, :self.length]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.length, 0


class SlotRows:
    """A transformer's running batch in `seats` preallocated rows: row i of the batch is seat i. Row i's tokens lie
    at indices start[i]..next[i]-1 of its seat (the indices before start[i] held its prefill's left padding), at
    positions 0..next[i]-start[i]-1. Attention reads each row's own span through a 4D additive mask, so rows of any
    lengths decode together, as they do in `generate()`.

    A step with `whole_capacity` attends over the seats' whole capacity rather than the longest row's span, so that
    a compiled step sees a new shape only when the batch size changes or the seats grow (see `GenerationWorker`)."""

    def __init__(self, seats: int):
        self.seats = seats
        self._store: torch.Tensor | None = None  # (2, layers, seats, heads, capacity, head_dim): keys, values
        self.keys: list[torch.Tensor] = []  # per layer, views of the store
        self.values: list[torch.Tensor] = []
        self.start: list[int] = []  # host-side, so that no step waits on the device to know its shapes
        self.next: list[int] = []

    def join(self, rows: CacheRows) -> SlotRows:
        """Copy a prefill's rows into the next free seats."""
        layers = rows.cache.layers
        first, count, length = len(self.next), rows.mask.shape[0], rows.mask.shape[1]
        if first + count > self.seats:
            raise ValueError(f"{first + count} rows do not fit {self.seats} seats")
        if self._store is None:
            self._allocate(layers[0].keys, len(layers), length + 1)
        self._grow(length + 1)
        for keys, values, layer in zip(self.keys, self.values, layers, strict=True):
            keys[first:first + count, :, :length] = layer.keys
            values[first:first + count, :, :length] = layer.values
        self._store[:, :, first:first + count, :, length:].zero_()  # see _allocate
        self.start += (length - rows.mask.sum(dim=1)).tolist()
        self.next += [length] * count
        return self

    def select(self, keep: list[int]) -> None:
        """Keep these rows, in this order: each kept row moves to the first free seat before it."""
        used = max(self.next)
        for seat, row in enumerate(keep):
            if seat != row:  # every layer's keys and values at once
                self._store[:, :, seat, :, :used] = self._store[:, :, row, :, :used]
        self.start, self.next = [self.start[row] for row in keep], [self.next[row] for row in keep]

    @property
    def capacity(self) -> int:
        """Positions each seat holds now (it grows in steps of CAPACITY_STEP)."""
        return self._store.shape[-2]

    @property
    def storage(self) -> tuple[int, int]:
        """Where the seats lie and how long they are: what a recorded CUDA graph that reads them depends on."""
        return self._store.data_ptr(), self.capacity

    def make_room(self) -> None:
        """Seats long enough for every row's next token."""
        self._grow(max(self.next) + 1)

    def step(self, model: PreTrainedModel, tokens: list[int], whole_capacity: bool = False) -> torch.Tensor:
        """One token for every row (`tokens`, each row's last): (B, V) float32 logits out."""
        self.make_room()
        device = self.keys[0].device
        length = self.capacity if whole_capacity else max(self.next) + 1
        logits = self.forward(model, torch.tensor(tokens, device=device), torch.tensor(self.start, device=device),
                              torch.tensor(self.next, device=device), length,
                              dynamic=whole_capacity and len(self.next) > 1)
        self.advance()
        return logits.float()

    def forward(self, model: PreTrainedModel, tokens: torch.Tensor, start: torch.Tensor, write_at: torch.Tensor,
                length: int, dynamic: bool = False) -> torch.Tensor:
        """The model's (B, V) logits, in its dtype, after one token per row, attending over the seats' first `length`
        positions: (B,) each row's token, start and next index; row i is seat i. Rows past the batch are allowed
        (with start and next 0 they attend to their seat's index 0 alone), so that a recorded graph can run a batch
        padded to its size. `dynamic` marks the batch dimension dynamic for a compiled model."""
        span = torch.arange(length, device=tokens.device)
        visible = (span >= start[:, None]) & (span <= write_at[:, None])  # (B, length)
        dtype = self.keys[0].dtype
        mask = torch.zeros(visible.shape, dtype=dtype, device=tokens.device).masked_fill_(~visible,
                                                                                        torch.finfo(dtype).min)
        cache = self._cache
        cache.rows, cache.write_at, cache.length = torch.arange(len(tokens), device=tokens.device), write_at, length
        inputs = {"input_ids": tokens[:, None], "attention_mask": mask[:, None, None, :],
                  "position_ids": (write_at - start)[:, None]}
        if dynamic:  # one compiled graph for the batch sizes above 1; a batch that fills every seat gets its own
            for tensor in (*inputs.values(), cache.rows, write_at):  # (reading keys[:B] then proves B == seats)
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return model(**inputs, cache=cache, use_cache=True).logits[:, -1, :]

    def advance(self) -> None:
        """Every row's next index moves on, after a step wrote its token."""
        self.next = [index + 1 for index in self.next]

    def clear(self) -> None:
        """No rows left; the seats stay allocated, at the same addresses, for the next batch."""
        self.start, self.next = [], []

    def _allocate(self, like: torch.Tensor, layers: int, length: int) -> None:
        """Seats for every layer's keys and values in one block. One block of tens of MiB is mapped and unmapped
        whole, where a hundred small ones would stay in the allocator's heap after the batch ends.

        A seat is zeroed past its row's tokens when the row joins (and the seats in use when they grow), never
        read uninitialised: a NaN under the mask would still poison attention's weighted sum. Zeroing the whole
        block instead (94 MiB for SmolLM2's 16 seats of 256 positions) took 50-100 ms of every lone request's
        time to first token on the 2-core CPU, and made every seat resident."""
        _, heads, _, head_dim = like.shape
        self._store = like.new_empty(2, layers, self.seats, heads, _round_up(length), head_dim)
        self._views()

    def _grow(self, length: int) -> None:
        if length <= self._store.shape[-2]:
            return
        narrow, used = self._store, len(self.next)
        self._store = narrow.new_empty(*narrow.shape[:-2], _round_up(length), narrow.shape[-1])
        self._store[..., :narrow.shape[-2], :] = narrow
        self._store[:, :, :used, :, narrow.shape[-2]:].zero_()
        self._views()

    def _views(self) -> None:
        """Each layer's keys and values as views of the store, and the one cache object that writes them (the same
        object every step, which a compiled step relies on)."""
        self.keys, self.values = list(self._store[0]), list(self._store[1])
        self._cache = SeatCache(self.keys, self.values)


def _round_up(length: int) -> int:
    return -(-length // CAPACITY_STEP) * CAPACITY_STEP


def plain_key_value_cache(cache: Cache) -> bool:
    """Whether `cache` holds nothing but full-length keys and values per layer (what `SlotRows` can take over)."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)
