"""The LSTM classifier's pooling modes: truth tables on hand-made states, padding never read."""

from __future__ import annotations

import pytest
import torch

from textsvc.models.lstm import LSTMConfig, LSTMForSequenceClassification, pool_states

# two rows of (T=3, D=4) states; the second row's last step is padding (its values must not count)
STATES = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 0.0, 1.0, 8.0], [3.0, 1.0, 2.0, 0.0]],
                       [[2.0, 6.0, 0.0, 1.0], [4.0, 2.0, 5.0, 3.0], [99.0, 99.0, 99.0, 99.0]]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
EXPECTED = {
    "max": [[5.0, 2.0, 3.0, 8.0], [4.0, 6.0, 5.0, 3.0]],
    "mean": [[3.0, 1.0, 2.0, 4.0], [3.0, 4.0, 2.5, 2.0]],
    # forward half at the last real token, backward half at the first
    "last": [[3.0, 1.0, 3.0, 4.0], [4.0, 2.0, 0.0, 1.0]],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_pooling_truth_table(mode):
    assert pool_states(STATES, MASK, mode, bidirectional=True).tolist() == EXPECTED[mode]


def test_concat_is_last_max_mean_side_by_side():
    expected = [sum((EXPECTED[part][row] for part in ("last", "max", "mean")), []) for row in range(2)]
    assert pool_states(STATES, MASK, "concat", bidirectional=True).tolist() == expected


@pytest.mark.parametrize("mode", ["max", "mean", "last", "concat"])
def test_padding_does_not_change_logits(mode):
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=20, embedding_dim=8, hidden_size=6, num_layers=1, pooling=mode, num_labels=3)
    network = LSTMForSequenceClassification(config).eval()
    ids = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0]])
    with torch.no_grad():
        alone = network(input_ids=ids).logits
        with_padding = network(input_ids=padded, attention_mask=torch.tensor([[1, 1, 1, 0, 0]])).logits
    assert alone.shape == (1, 3)
    torch.testing.assert_close(alone, with_padding)
