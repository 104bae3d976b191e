"""The LSTM classifier's pooling modes: truth tables on hand-made states, padding never read."""

from __future__ import annotations

import copy

import pytest
import torch

from textsvc.models.lstm import LSTMConfig, LSTMForSequenceClassification, pool_states, word_pair_buckets

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



def with_and_without_bag(word_pair_buckets: int = 0) -> tuple[LSTMForSequenceClassification,
                                                               LSTMForSequenceClassification]:
    """A classifier with a bag of words, and a copy of it whose LSTM decides alone."""
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=20, embedding_dim=8, hidden_size=6, num_layers=1, num_labels=3, bag_of_words=True,
                        word_pair_buckets=word_pair_buckets, dropout=0.0, embedding_dropout=0.0)
    with_bag = LSTMForSequenceClassification(config).eval()
    alone = copy.deepcopy(with_bag)
    alone.bag_of_words = alone.bag_of_word_pairs = None
    return with_bag, alone


def test_bag_of_words_starts_silent():
    with_bag, alone = with_and_without_bag(word_pair_buckets=64)
    ids = torch.tensor([[5, 6, 7, 7]])
    with torch.no_grad():
        assert torch.equal(with_bag(input_ids=ids).logits, alone(input_ids=ids).logits)


def test_bag_of_words_adds_scaled_word_weights_and_skips_padding():
    with_bag, alone = with_and_without_bag()
    with torch.no_grad():
        with_bag.bag_of_words.weight[5] = torch.tensor([1.0, 0.0, -1.0])
        with_bag.bag_of_words.weight[7] = torch.tensor([0.0, 2.0, 0.0])
        ids, mask = torch.tensor([[5, 7, 7, 6, 0]]), torch.tensor([[1, 1, 1, 1, 0]])
        added = with_bag(input_ids=ids, attention_mask=mask).logits - alone(input_ids=ids, attention_mask=mask).logits
    # the 4 words' weights summed, over the square root of their count, times the scale; padding left out
    expected = with_bag.config.bag_of_words_scale * torch.tensor([[1.0, 4.0, -1.0]]) / 2.0
    torch.testing.assert_close(added, expected)


def test_word_pairs_count_beside_words_and_skip_padding():
    with_bag, alone = with_and_without_bag(word_pair_buckets=64)
    ids, mask = torch.tensor([[5, 7, 5, 0]]), torch.tensor([[1, 1, 1, 0]])
    pairs = word_pair_buckets(ids, 64)[0].tolist()  # (5, 7), (7, 5), (5, padding)
    assert len(set(pairs)) == 3 and all(0 <= bucket < 64 for bucket in pairs)
    with torch.no_grad():
        with_bag.bag_of_word_pairs.weight[pairs[0]] = torch.tensor([3.0, 0.0, 0.0])
        with_bag.bag_of_word_pairs.weight[pairs[2]] = torch.tensor([0.0, 50.0, 0.0])  # a pair with padding: unread
        added = with_bag(input_ids=ids, attention_mask=mask).logits - alone(input_ids=ids, attention_mask=mask).logits
    # one weighted pair among 3 words and 2 real pairs: divided by the square root of 5
    expected = with_bag.config.bag_of_words_scale * torch.tensor([[3.0, 0.0, 0.0]]) / 5**0.5
    torch.testing.assert_close(added, expected)


def test_bag_dropout_leaves_out_whole_texts_bags_in_training_only():
    with_bag, alone = with_and_without_bag()
    with_bag.config.bag_of_words_dropout = 0.5
    with torch.no_grad():
        with_bag.bag_of_words.weight[5] = torch.tensor([1.0, 0.0, -1.0])
        ids = torch.tensor([[5, 6, 7, 8]] * 64)
        bag = with_bag.config.bag_of_words_scale * torch.tensor([1.0, 0.0, -1.0]) / 2.0  # the bag of each row
        torch.testing.assert_close(with_bag(input_ids=ids).logits - alone(input_ids=ids).logits, bag.expand(64, 3))
        added = with_bag.train()(input_ids=ids).logits - alone.train()(input_ids=ids).logits  # no other dropout
    left_out = torch.isclose(added, torch.zeros(3), atol=1e-6).all(dim=1)  # the LSTM alone
    doubled = torch.isclose(added, 2 * bag, atol=1e-6).all(dim=1)  # kept, scaled up as dropout does
    assert bool((left_out | doubled).all()) and 0 < int(left_out.sum()) < 64
