"""Knowledge distillation: a student classifier learns from a trained teacher's logits as well as the labels.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network": the soft loss is the KL divergence
between temperature-softened distributions, scaled by T^2 so its gradients keep their size as T changes.
Tang et al. 2019 showed a BiLSTM trained from scratch this way closes much of the gap to BERT on SST-2.
Several teachers act as one ensemble: their log-probabilities are averaged (a product of experts), which for a
single teacher gives back its own softened distribution at any temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from textsvc.errors import ConfigError, ErrorCode
from textsvc.loading import classify_logits, load_classifier
from textsvc.training.adversarial import AdversarialTrainer

TEACHER_COLUMN = "teacher_logits"


def teacher_logits(teacher_dirs: Sequence[str], texts: Sequence[str], label_names: Sequence[str],
                   batch_size: int = 128) -> list[list[float]]:
    """The teachers' mean log-probabilities for `texts`, one row per text, in the student's label order."""
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    total = torch.zeros(len(texts), len(label_names))
    for teacher_dir in teacher_dirs:
        teacher = load_classifier(teacher_dir)
        if sorted(teacher.label_names) != sorted(label_names):
            raise ConfigError(f"teacher_model_dir: the labels of {teacher_dir} {teacher.label_names} differ from the "
                              f"data's {list(label_names)}",
                              code=ErrorCode.TEACHER_LABELS_MISMATCH, field="teacher_model_dir")
        order = [teacher.label_names.index(name) for name in label_names]
        logits = classify_logits(teacher, [texts[i] for i in by_length], batch_size)[:, order]  # (N, num_labels)
        total[by_length] += F.log_softmax(logits, dim=-1)
        del teacher
    return (total / len(teacher_dirs)).tolist()


class DistillationTrainer(AdversarialTrainer):
    """A `Trainer` whose training loss mixes the label loss with the soft loss against the teacher."""

    def __init__(self, *args, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature

    def text_loss(self, model, inputs: dict):
        targets = inputs.pop(TEACHER_COLUMN, None)  # absent from evaluation batches
        outputs = model(**inputs)
        loss = outputs.loss
        if targets is not None:
            soft = soft_target_loss(outputs.logits, targets.to(outputs.logits.dtype), self.temperature)
            loss = self.alpha * loss + (1 - self.alpha) * soft
        return loss, outputs


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at `temperature`, times temperature^2; both (B, num_labels)."""
    student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean") * temperature**2
