"""Model architectures written for textsvc, registered with the transformers Auto classes."""


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModelFor...` resolve textsvc's own architectures."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from textsvc.models.lstm import LSTMConfig, LSTMForCausalLM, LSTMForSequenceClassification, LSTMLMConfig
    from textsvc.models.pooled_encoder import PooledEncoderConfig, PooledEncoderForSequenceClassification

    AutoConfig.register(LSTMConfig.model_type, LSTMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(LSTMConfig, LSTMForSequenceClassification, exist_ok=True)
    AutoConfig.register(LSTMLMConfig.model_type, LSTMLMConfig, exist_ok=True)
    AutoModelForCausalLM.register(LSTMLMConfig, LSTMForCausalLM, exist_ok=True)
    AutoConfig.register(PooledEncoderConfig.model_type, PooledEncoderConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(PooledEncoderConfig, PooledEncoderForSequenceClassification,
                                                exist_ok=True)
