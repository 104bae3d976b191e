"""Embedding + LSTM models (classifier and language model) as Hugging Face `PreTrainedModel`s.

Written as transformers models so that `save_pretrained`, `from_pretrained`, the `Trainer` and the Auto
classes treat them like any other architecture. Tensors only: no files, tokenizers or optimizers here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutput

from textsvc.config.training import POOLING_MODES


class LSTMConfig(PreTrainedConfig):
    """Sizes of the embedding + LSTM stack; `pooling` says how a sentence vector is made from its states."""

    model_type = "textsvc_lstm"

    vocab_size: int = 16000
    embedding_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.3
    embedding_dropout: float = 0.1
    pooling: str = "max"
    bag_of_words: bool = False
    # the bag's logits are its weights times this: Adam moves every weight by about the learning rate a step, so
    # the factor sets how fast the bag learns beside the LSTM (on AG News, 10 beat 1 and 30 on validation)
    bag_of_words_scale: float = 10.0
    word_pair_buckets: int = 0
    bag_of_words_dropout: float = 0.0  # share of training texts whose bag is left out
    max_position_embeddings: int = 512  # longest input the serving side will accept
    pad_token_id: int | None = 0
    initializer_range: float = 0.1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")


class LSTMEncoder(nn.Module):
    """Token ids -> contextual states, with padding packed away so the LSTM never reads it."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding_dropout(self.embeddings(input_ids))  # (B, T, E)
        return packed_states(self.lstm, embedded, attention_mask)  # (B, T, H * directions)


def packed_states(lstm: nn.LSTM, embedded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, E) right-padded inputs -> (B, T, H * directions) states, zeros past each row's length."""
    lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()  # (B,) an empty row still gets one step
    packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    states, _ = lstm(packed)
    states, _ = pad_packed_sequence(states, batch_first=True, total_length=embedded.shape[1])
    return states


def pooled_width(mode: str, state_width: int) -> int:
    """Width of the sentence vector `pool_states` makes from states `state_width` wide."""
    return 3 * state_width if mode == "concat" else state_width


def pool_states(states: torch.Tensor, attention_mask: torch.Tensor, mode: str, bidirectional: bool) -> torch.Tensor:
    """(B, T, D) states -> (B, D) sentence vectors ((B, 3D) for "concat"), ignoring padded positions."""
    if mode == "concat":  # ULMFiT's concat pooling (Howard & Ruder 2018): last state, max and mean side by side
        return torch.cat([pool_states(states, attention_mask, part, bidirectional)
                          for part in ("last", "max", "mean")], dim=-1)
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
    if mode == "max":
        return states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(dim=1).values
    if mode == "mean":
        return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    # "last": the forward direction's state at each row's last token, the backward direction's at its first
    last_index = (attention_mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
    last = states[torch.arange(states.shape[0], device=states.device), last_index]  # (B, D)
    if not bidirectional:
        return last
    half = states.shape[-1] // 2
    return torch.cat([last[:, :half], states[:, 0, half:]], dim=-1)


class LSTMPreTrainedModel(PreTrainedModel):
    config_class = LSTMConfig
    config: LSTMConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            module.weight.uniform_(-self.config.initializer_range, self.config.initializer_range)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if "weight_hh" in name:
                    nn.init.orthogonal_(param)  # keeps the recurrence well-conditioned early in training
                elif "weight_ih" in name:
                    nn.init.xavier_uniform_(param)
                elif "bias" in name:
                    param.zero_()
                    hidden = param.shape[0] // 4
                    param[hidden : 2 * hidden].fill_(1.0)  # forget-gate bias 1 (Jozefowicz et al. 2015)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                module.bias.zero_()


class LSTMForSequenceClassification(LSTMPreTrainedModel):
    """Embedding -> (Bi)LSTM -> pooled sentence vector -> linear head over `num_labels` classes."""

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = LSTMEncoder(config)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(pooled_width(config.pooling, config.hidden_size * directions), config.num_labels)
        # the "wide" part of wide & deep (Cheng et al. 2016): a linear model of the text's bag of words, one weight
        # per token and label, added to the LSTM's logits; it learns the telling words (names, places) that a
        # TF-IDF model keys on and frozen embeddings blur
        self.bag_of_words = (nn.Embedding(config.vocab_size, config.num_labels, padding_idx=config.pad_token_id)
                             if config.bag_of_words else None)
        # word pairs hashed into buckets, as fastText adds bigrams (Joulin et al. 2017): order a bag of single words
        # cannot see ("wall street"), at a fixed size whatever the vocabulary
        self.bag_of_word_pairs = (nn.Embedding(config.word_pair_buckets, config.num_labels)
                                  if config.bag_of_words and config.word_pair_buckets else None)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        if module is self.bag_of_words or module is self.bag_of_word_pairs:
            module.weight.zero_()  # the LSTM alone decides until the labels move the words' weights
        else:
            super()._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if input_ids.shape[1] == 0:  # a batch of empty texts
            input_ids = nn.functional.pad(input_ids, (0, 1), value=self.config.pad_token_id or 0)
            attention_mask = nn.functional.pad(attention_mask, (0, 1))
        # an empty text is read as one padding step, so that pooling has a state (max pooling gave +-inf logits);
        # with right padding every other row has position 0 already
        attention_mask = attention_mask.clone()
        attention_mask[:, 0] = 1
        states = self.encoder(input_ids, attention_mask)  # (B, T, D)
        pooled = pool_states(states, attention_mask, self.config.pooling, self.config.bidirectional)  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if self.bag_of_words is not None:
            bag = self.bag_logits(input_ids, attention_mask.unsqueeze(-1).to(logits.dtype))  # (B, num_labels)
            if self.training and self.config.bag_of_words_dropout:
                # whole texts lose their bag, so that the LSTM learns to decide alone too instead of leaving the
                # words to the faster-learning bag (on SST-2 an ever-present bag cost 3.5 points of dev accuracy,
                # half left out 0.4)
                keep = nn.functional.dropout(torch.ones_like(bag[:, :1]), self.config.bag_of_words_dropout)  # (B, 1)
                bag = bag * keep
            logits = logits + bag
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels, self.config.problem_type)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def bag_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, num_labels) logits of the bag of words: the weights of the text's tokens and token pairs, summed and
        divided by the square root of their count (`mask`: (B, T, 1), 1 for real tokens)."""
        # the square root is an L2-normalised count vector's scale: a mean would shrink each telling word's pull
        # by the text's length
        bag, count = (self.bag_of_words(input_ids) * mask).sum(dim=1), mask.sum(dim=1)  # (B, num_labels), (B, 1)
        if self.bag_of_word_pairs is not None:
            pairs = word_pair_buckets(input_ids, self.config.word_pair_buckets)  # (B, T - 1)
            pair_mask = mask[:, :-1] * mask[:, 1:]  # both tokens real
            bag = bag + (self.bag_of_word_pairs(pairs) * pair_mask).sum(dim=1)
            count = count + pair_mask.sum(dim=1)
        return self.config.bag_of_words_scale * (bag / count.sqrt())


def word_pair_buckets(input_ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """(B, T) token ids -> (B, T - 1) bucket of each pair of neighbours (a multiplicative hash, as fastText's)."""
    return (input_ids[:, :-1] * 1_000_003 + input_ids[:, 1:]) % buckets


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Cross-entropy for single-label problems, binary cross-entropy per label for multi-label ones."""
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return nn.functional.cross_entropy(logits, labels.view(-1))


class LSTMLMConfig(PreTrainedConfig):
    """Sizes of the embedding + LSTM language model; input and output embeddings are tied."""

    model_type = "textsvc_lstm_lm"

    vocab_size: int = 8192
    embedding_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    embedding_dropout: float = 0.1
    max_position_embeddings: int = 256  # block size seen in training; the recurrence itself has no limit
    initializer_range: float = 0.1
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class LSTMForCausalLM(LSTMPreTrainedModel, GenerationMixin):
    """Embedding -> LSTM -> (projection to the embedding size) -> tied output embedding over the vocabulary.

    The recurrent state `(h, c)` travels as `cache`, so both `generate()` and textsvc's sampling loop
    feed one new token per step instead of re-reading the whole text (Press & Wolf 2017 for the tied weights).
    """

    config_class = LSTMLMConfig
    config: LSTMLMConfig
    base_model_prefix = "model"
    _tied_weights_keys = {"lm_head.weight": "embeddings.weight"}

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=config.num_layers,
                            dropout=config.dropout if config.num_layers > 1 else 0.0, batch_first=True)
        # tying needs the last state in embedding space: project when the sizes differ
        self.projection = (nn.Linear(config.hidden_size, config.embedding_dim, bias=False)
                           if config.hidden_size != config.embedding_dim else nn.Identity())
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is an (h, c) pair, not a key/value cache: generate() must not make one

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,  # unused: padding is only ever on the right, never read back
        labels: torch.Tensor | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        embedded = self.embedding_dropout(self.embeddings(input_ids))  # (B, T, E)
        states, state = self.lstm(embedded, cache)  # (B, T, H); h and c: (L, B, H)
        logits = self.lm_head(self.dropout(self.projection(states)))  # (B, T, V)
        loss = None
        if labels is not None:  # predict token t + 1 from the states up to t; -100 marks padding
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                               labels[:, 1:].reshape(-1), ignore_index=-100)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=state if use_cache else None)


class LSTMEncoderLM(nn.Module):
    """A classifier's own embedding + LSTM read as a language model, to pre-train it on unlabelled text before
    fine-tuning (Dai & Le 2015, "Semi-supervised Sequence Learning"). It holds the classifier's `LSTMEncoder`
    itself, not a copy, so that what it learns is what fine-tuning starts from; the output layer is its own and is
    dropped afterwards.

    Directions: the forward direction's state at t predicts token t + 1, the backward direction's state at t token
    t - 1 (the pair of language models of ELMo, Peters et al. 2018); neither has read the token it predicts. In a
    stacked bidirectional LSTM the layers above the first read both directions' states, so they would see the
    token they predict: for it only the embeddings and the first layer are trained (`pretrained_layers`), through
    a one-layer view sharing that layer's weights; the layers above keep their random start.

    `output_index` maps each token id to its row of the output layer (-100: never predicted), so that the softmax
    spans the tokens of the training text only: SmolLM2's 49,152 rows would cost more than the LSTM itself.
    """

    def __init__(self, encoder: LSTMEncoder, output_index: torch.Tensor, dropout: float):
        super().__init__()
        self.encoder = encoder
        lstm = encoder.lstm
        self.stacked_bidirectional = lstm.bidirectional and lstm.num_layers > 1
        self.lstm = first_layer_view(lstm) if self.stacked_bidirectional else lstm
        self.pretrained_layers = 1 if self.stacked_bidirectional else lstm.num_layers
        self.register_buffer("output_index", output_index, persistent=False)  # (V,)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(lstm.hidden_size, int(output_index.max()) + 1)  # one output layer for both directions
        # the Trainer must not hand this module `num_items_in_batch`: the loss below is a mean already
        self.accepts_loss_kwargs = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> dict:
        embedded = self.encoder.embedding_dropout(self.encoder.embeddings(input_ids))  # (B, T, E)
        states = packed_states(self.lstm, embedded, attention_mask)  # (B, T, H * directions)
        targets = self.output_index[input_ids].masked_fill(attention_mask == 0, -100)  # (B, T)
        hidden = self.lstm.hidden_size
        # forward: the state at t predicts token t + 1 (padding past the end is -100, never scored)
        losses = [self.token_loss(states[:, :-1, :hidden], targets[:, 1:])]
        if self.lstm.bidirectional:  # backward: the state at t predicts token t - 1, from real positions t only
            previous = targets[:, :-1].masked_fill(attention_mask[:, 1:] == 0, -100)
            losses.append(self.token_loss(states[:, 1:, hidden:], previous))
        return {"loss": torch.stack(losses).mean()}

    def token_loss(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of (B, T, H) states predicting (B, T) targets, scored where a target is set."""
        scored = targets != -100  # (B, T)
        logits = self.head(self.dropout(states[scored]))  # (N, rows): only scored positions reach the softmax
        return nn.functional.cross_entropy(logits.float(), targets[scored])


def first_layer_view(lstm: nn.LSTM) -> nn.LSTM:
    """A one-layer LSTM whose weights are `lstm`'s first layer's own parameters (shared, not copied)."""
    view = nn.LSTM(lstm.input_size, lstm.hidden_size, num_layers=1, bidirectional=lstm.bidirectional,
                   batch_first=lstm.batch_first)
    for name in view._flat_weights_names:  # weight_ih_l0, ..., bias_hh_l0_reverse
        setattr(view, name, getattr(lstm, name))  # RNNBase.__setattr__ keeps its flat weight list in step
    return view
