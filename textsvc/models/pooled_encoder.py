"""A pretrained encoder whose classification head reads the mean of its token states.

Sentence-embedding models (sentence-transformers' all-MiniLM-L6-v2 among them) are trained to mean-pool their
token states; their [CLS] state and pooler were never trained for a sentence vector. The usual
`...ForSequenceClassification` head reads [CLS] through the pooler, so fine-tuning such a model with it first has to
teach [CLS] what the mean already knows. This head pools the way the encoder was trained.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from textsvc.models.lstm import classification_loss


class PooledEncoderConfig(PreTrainedConfig):
    """The encoder's own config (as a dict, with its `model_type`), plus the head's pooling and dropout."""

    model_type = "textsvc_pooled_encoder"

    encoder_config: dict | None = None
    pooling: str = "mean"
    classifier_dropout: float = 0.1
    max_position_embeddings: int = 512  # the encoder's, for the serving side's truncation
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling != "mean":
            raise ValueError(f"pooling must be 'mean', got {self.pooling!r}")

    def build_encoder_config(self) -> PreTrainedConfig:
        fields = dict(self.encoder_config or {})
        return AutoConfig.for_model(fields.pop("model_type"), **fields)


def _bare_encoder(config: PreTrainedConfig) -> PreTrainedModel:
    """`AutoModel` for the config, without a pooler where the architecture has one (it would never get a gradient,
    which DDP refuses)."""
    model_class = AutoModel._model_mapping[type(config)]
    options = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class).parameters else {}
    return model_class(config, **options)


class PooledEncoderForSequenceClassification(PreTrainedModel):
    """Encoder -> mean of the token states under the attention mask -> dropout -> linear head."""

    config_class = PooledEncoderConfig
    config: PooledEncoderConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"

    def __init__(self, config: PooledEncoderConfig):
        super().__init__(config)
        self.encoder = _bare_encoder(config.build_encoder_config())
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, config.num_labels)
        self.post_init()

    @classmethod
    def from_encoder(cls, path: str, **config_fields) -> PooledEncoderForSequenceClassification:
        """A new classifier around the pretrained encoder at `path` (a directory or hub name), head untrained."""
        pretrained = AutoModel.from_pretrained(path, use_safetensors=True)
        encoder_config = pretrained.config.to_dict()
        config = PooledEncoderConfig(encoder_config=encoder_config, max_position_embeddings=int(
            encoder_config.get("max_position_embeddings") or 512), **config_fields)
        model = cls(config)
        # the pooler (if any) is dropped: strict=False for it alone, and only for it
        missing, unexpected = model.encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if missing or any(not key.startswith("pooler.") for key in unexpected):
            raise ValueError(f"{path}: encoder weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model

    @torch.no_grad()
    def _init_weights(self, module):
        if module is self.classifier:
            module.weight.normal_(0.0, self.config.initializer_range)
            module.bias.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # not every encoder takes them
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs).last_hidden_state  # (B, T, H)
        weights = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels, self.config.problem_type)
        return SequenceClassifierOutput(loss=loss, logits=logits)
