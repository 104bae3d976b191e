"""Train or load Hugging Face `tokenizers` tokenizers, wrapped as `PreTrainedTokenizerFast`."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int,
                              with_cls_sep: bool) -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece tokenizer learnt from `texts`; `[PAD]` is id 0, `[UNK]` id 1.

    `with_cls_sep` adds BERT's `[CLS] ... [SEP]` framing, which encoders need and LSTMs do not.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK, CLS, SEP, MASK])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if with_cls_sep:
        cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls_id), (SEP, sep_id)])
    input_names = ["input_ids", "token_type_ids", "attention_mask"] if with_cls_sep else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP, mask_token=MASK,
        model_max_length=max_length, model_input_names=input_names)


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """The fast tokenizer saved in a model directory (or named on the hub)."""
    return AutoTokenizer.from_pretrained(path, use_fast=True)


EOS = "<|endoftext|>"  # GPT-2's document separator; also the start token of an empty prompt
CHAR_UNK = "<|unk|>"


def _generator_tokenizer(tokenizer: Tokenizer, max_length: int, unk: str | None = None) -> PreTrainedTokenizerFast:
    """Wrap a generator's tokenizer: `<|endoftext|>` ends documents and doubles as padding (as in GPT-2)."""
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=unk, model_max_length=max_length,
                                   model_input_names=["input_ids", "attention_mask"])


def train_byte_bpe_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE learnt from `texts`: any text encodes, nothing is unknown, case is kept."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _generator_tokenizer(tokenizer, max_length)


def train_char_tokenizer(texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """One token per character seen in `texts` (as char-rnn and nanoGPT's shakespeare_char); others are `<|unk|>`."""
    chars = sorted(set().union(*(set(text) for text in texts)))
    vocab = {EOS: 0, CHAR_UNK: 1, **{char: i + 2 for i, char in enumerate(chars)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=CHAR_UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tokenizer.decoder = decoders.Fuse()  # join without spaces
    tokenizer.add_special_tokens([EOS, CHAR_UNK])
    return _generator_tokenizer(tokenizer, max_length, unk=CHAR_UNK)
