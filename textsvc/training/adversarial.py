"""Adversarial training on the word embeddings (Miyato et al. 2017, "Adversarial Training Methods for
Semi-Supervised Text Classification").

Each training step also trains on every text with its embedded tokens moved by the perturbation of L2 norm
`epsilon` (over the whole text) that raises its loss most to first order: the loss's gradient with respect to the
embeddings, scaled to that norm. The model learns to keep its decision when a word's vector moves a little towards
another's, which regularises an LSTM on a small data set more than dropout does. Costs about two steps a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import Trainer


class AdversarialTrainer(Trainer):
    """A `Trainer` whose training loss is `text_loss` on the clean texts plus, when `adversarial_epsilon` > 0,
    `text_loss` on the texts with adversarially perturbed embeddings. Evaluation sees the clean loss only."""

    def __init__(self, *args, adversarial_epsilon: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.adversarial_epsilon = adversarial_epsilon

    def text_loss(self, model, inputs: dict):
        """The loss of one batch, and the model's outputs (subclasses add to the label loss)."""
        outputs = model(**inputs)
        return outputs.loss, outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (model.training and self.adversarial_epsilon):
            loss, outputs = self.text_loss(model, inputs)
            return (loss, outputs) if return_outputs else loss
        embeddings = model.get_input_embeddings()
        with hooked(embeddings, _as_graph_leaf) as seen:
            loss, outputs = self.text_loss(model, dict(inputs))
        (gradient,) = torch.autograd.grad(loss, seen[0], retain_graph=True)  # (B, T, E)
        perturbation = adversarial_perturbation(gradient, self.adversarial_epsilon)
        with hooked(embeddings, lambda embedded: embedded + perturbation):
            adversarial_loss, _ = self.text_loss(model, dict(inputs))
        loss = loss + adversarial_loss
        return (loss, outputs) if return_outputs else loss


def adversarial_perturbation(gradient: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(B, T, E) loss gradient -> the perturbation of L2 norm `epsilon` per text along it (no gradient flows
    through it: it is a fixed input to the second pass, as in Miyato et al.)."""
    norm = gradient.flatten(1).norm(dim=1).clamp(min=1e-12)  # (B,) one ball per text, over all its tokens
    return (epsilon * gradient / norm[:, None, None]).detach()


def _as_graph_leaf(embedded: torch.Tensor) -> torch.Tensor:
    """Frozen embeddings give an output outside the autograd graph: make it a leaf the loss can be differentiated
    by."""
    return embedded if embedded.requires_grad else embedded.detach().requires_grad_()


@contextmanager
def hooked(embeddings: torch.nn.Module, change) -> Iterator[list[torch.Tensor]]:
    """Within the block, the embedding layer's output passes through `change`; the list holds each changed
    output."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        seen.append(change(output))
        return seen[-1]

    handle = embeddings.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
